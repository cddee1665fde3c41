"""Quotas per API key (service/limits.py): predictions counted in images over v1 and v2, task uploads
counted one each, one quota for every API process through Redis, and this process's own count while
Redis is unreachable."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from core.settings import Settings
from service.app import create_app
from tests.service.live import free_port
from tests.service.support import (
    ADMIN,
    ROOT,
    TINY,
    auth,
    digits,
    npz_bytes,
    settings_env,
    stop,
    wait_for_text,
    wait_job,
)
from tests.service.test_auth import new_key

QUOTA = "10/hour"


def predict(c: Any, learner: str, key: str, n: int) -> httpx.Response:
    x, _ = digits([0], per_class=n)
    return c.post(f"/v1/learners/{learner}/predict", json={"images": x.tolist()}, headers=auth(key))


def infer(c: Any, learner: str, key: str, n: int) -> httpx.Response:
    x, _ = digits([1], per_class=n)
    tensor = {"name": "images", "datatype": "UINT8", "shape": [n, 8, 8], "data": x.tolist()}
    return c.post(f"/v2/models/{learner}/infer", json={"inputs": [tensor]}, headers=auth(key))


def test_limits_predict_counts_images_over_v1_and_v2(client: TestClient, pg_settings: Settings, trained: str):
    limited = pg_settings.model_copy(update={"predict_limit": QUOTA})
    _, key = new_key(client, "predict")
    _, other = new_key(client, "predict")
    with TestClient(create_app(limited)) as c:
        assert predict(c, trained, key, 4).status_code == 200
        assert infer(c, trained, key, 4).status_code == 200  # 8 of 10 used
        r = predict(c, trained, key, 3)
        assert r.status_code == 429 and r.json()["error"] == "TooManyRequests", r.text
        detail = r.json()["detail"]
        assert "10 images per hour per API key" in detail and "DGM_PREDICT_LIMIT=10/hour" in detail
        assert "2 left in the window and this call has 3" in detail, detail
        assert 3000 <= int(r.headers["retry-after"]) <= 3600  # the oldest images leave the window then
        assert predict(c, trained, key, 2).status_code == 200  # the refused call cost nothing: 10 of 10
        r = infer(c, trained, key, 1)
        assert r.status_code == 429 and r.json()["error"].startswith("TooManyRequests: rate limit of 10")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get(f"/v1/learners/{trained}", headers=auth(key)).status_code == 200  # reads are free
        assert predict(c, trained, other, 10).status_code == 200  # another key draws on its own quota
        r = predict(c, trained, other, 11)
        assert r.status_code == 400 and "send at most 10 per call" in r.json()["detail"], r.text


def test_limits_upload_counts_one_per_task(client: TestClient, pg_settings: Settings):
    """A task upload past DGM_UPLOAD_LIMIT is refused before its body is read, and stores no task."""
    limited = pg_settings.model_copy(update={"upload_limit": "1/hour"})
    _, key = new_key(client, "train")
    name = f"quota-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    with TestClient(create_app(limited)) as c:

        def upload(classes: list[int]) -> httpx.Response:
            x, y = digits(classes)
            file = {"file": ("t.npz", npz_bytes(x=x, y=y))}
            return c.post(f"/v1/learners/{name}/tasks", files=file, headers=auth(key))

        accepted = upload([0, 1])
        assert accepted.status_code == 202, accepted.text
        r = upload([2, 3])
        assert r.status_code == 429 and "1 task uploads per hour per API key" in r.json()["detail"], r.text
        assert "DGM_UPLOAD_LIMIT=1/hour" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
        assert wait_job(c, accepted.json()["job"]["id"])["state"] == "succeeded"
        tasks = c.get(f"/v1/learners/{name}/tasks", headers=auth()).json()
    assert [t["classes"] for t in tasks] == [["0", "1"]], tasks


@contextlib.contextmanager
def api_processes(env: dict[str, str], folder: Path, count: int) -> Iterator[list[httpx.Client]]:
    """`dgm serve --no-worker` `count` times on free ports with the same settings: API replicas."""
    procs, clients = [], []
    try:
        for i in range(count):
            port, log = free_port(), folder / f"api-{i}.log"
            cmd = [sys.executable, "-m", "cli", "serve", "--no-worker", "--port", str(port)]
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
            procs.append((proc, log))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
        for proc, log in procs:  # started together, waited for together: the imports overlap
            wait_for_text(log, "Application startup complete", proc, timeout=90)
        yield clients
    finally:
        for http in clients:
            http.close()
        for proc, _ in procs:
            stop(proc)


def test_limits_quota_is_shared_by_two_api_processes(
    client: TestClient, pg_settings: Settings, trained: str, tmp_path: Path
):
    """Two API processes on the same PostgreSQL and Redis: 6 images through A and 4 through B spend the
    key's 10, and both then refuse it; without sharing, each would still admit 4 or 6 more."""
    _, key = new_key(client, "predict")
    _, other = new_key(client, "predict")
    env = {
        **settings_env(pg_settings),
        "DGM_ADMIN_KEY": ADMIN,
        "DGM_SWEEP_INTERVAL_S": "0",
        "DGM_SERVE_DEVICE": "cpu",
        "DGM_PREDICT_LIMIT": QUOTA,  # DGM_RATE_LIMIT_STORAGE unset: the broker's Redis
    }
    with api_processes(env, tmp_path, 2) as (a, b):
        assert predict(a, trained, key, 6).status_code == 200
        assert predict(b, trained, key, 4).status_code == 200
        for http in (a, b):
            r = predict(http, trained, key, 1)
            assert r.status_code == 429, r.text
            assert "0 left in the window" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
        assert predict(b, trained, other, 10).status_code == 200  # per key, not per process
        assert predict(a, trained, other, 1).status_code == 429


def test_limits_redis_down_fails_over_to_this_process(
    client: TestClient, pg_settings: Settings, trained: str, caplog: pytest.LogCaptureFixture
):
    """Redis unreachable: predictions go on, counted by this process alone, and the log says so."""
    down = pg_settings.model_copy(
        update={"predict_limit": "3/hour", "rate_limit_storage": f"redis://127.0.0.1:{free_port()}/0"}
    )
    _, key = new_key(client, "predict")
    with caplog.at_level(logging.WARNING, logger="service.limits"), TestClient(create_app(down)) as c:
        codes = [predict(c, trained, key, 1).status_code for _ in range(4)]
        r = predict(c, trained, key, 1)
        failovers = c.app.state.rate_limiter.failovers
    assert codes == [200, 200, 200, 429], codes
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert 1 <= failovers <= 5  # once per outage and recheck, not once per request
    warned = [m for m in caplog.messages if "unreachable" in m]
    assert warned and "counts quotas alone" in warned[0], caplog.messages
    assert "each replica admits the whole quota" in warned[0]


def test_limits_settings_refuse_bad_quotas_and_the_replaced_rate_setting(tmp_path: Path):
    with pytest.raises(ValidationError, match="DGM_PREDICT_LIMIT must read like '600/minute'"):
        Settings(data_dir=tmp_path, predict_limit="lots")
    with pytest.raises(ValidationError, match="DGM_UPLOAD_LIMIT must read like"):
        Settings(data_dir=tmp_path, upload_limit="5 per fortnight")
    with pytest.raises(ValidationError, match="replaced by DGM_PREDICT_LIMIT"):
        Settings(data_dir=tmp_path, predict_rate_per_s=2)
    with pytest.raises(ValidationError, match="rate_limit_storage"):
        Settings(data_dir=tmp_path, rate_limit_storage="memcached://127.0.0.1:11211")
    assert Settings(data_dir=tmp_path).rate_limit_uri == "memory://"  # embedded: one API process
    assert Settings(data_dir=tmp_path, broker_url="redis://h:6379/3").rate_limit_uri == "redis://h:6379/3"
    pinned = Settings(data_dir=tmp_path, broker_url="redis://h:6379/3", rate_limit_storage="redis://q:1/0")
    assert pinned.rate_limit_uri == "redis://q:1/0"

"""Structured logs: with DGM_LOG_JSON=1 the worker and the API write one JSON object per line, and every
line a training job logs names its job and learner. Real worker on Redis, PostgreSQL, real `dgm serve`."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from unittest import mock

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from core.logs import ContextFilter, JsonFormatter, log_context
from core.settings import Settings
from service.app import create_app
from tests.service.support import (
    ADMIN,
    REDIS,
    ROOT,
    TINY,
    auth,
    digits,
    npz_bytes,
    pg_schema,
    settings_env,
    start_worker,
    stop,
    wait_for_text,
    wait_job,
)

FIELDS = {"timestamp", "level", "logger", "message"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("logs")
    with pg_schema() as url:
        s = Settings(
            data_dir=data, database_url=url, broker_url=f"{REDIS}/11", artifact_dir=data / "artifacts",
            queue=f"dgm-logs-{uuid.uuid4().hex[:8]}", admin_key=ADMIN, torch_threads=1, device="cpu",
            progress_interval_s=0.05, requeue_countdown_s=0.5, sweep_interval_s=0,
        )  # fmt: skip
        yield s
        redis.Redis.from_url(s.broker_url).delete(s.queue)


def records(text: str, after: str) -> list[dict]:
    """Every line from the first one containing `after`, each parsed as one JSON object."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    out = []
    for line in lines[start:]:
        record = json.loads(line)  # fails the test on any line that is not one JSON object
        assert isinstance(record, dict) and FIELDS <= set(record), line
        datetime.fromisoformat(record["timestamp"])
        out.append(record)
    return out


def test_logs_worker_json_lines_carry_job_and_learner(settings: Settings):
    log = settings.data_dir / "worker-json.log"
    with mock.patch.dict(os.environ, {"DGM_LOG_JSON": "1"}):  # start_worker passes os.environ on
        proc = start_worker(settings, log)
    try:
        with TestClient(create_app(settings)) as client:
            name = f"logs-{uuid.uuid4().hex[:6]}"
            assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
            x, y = digits([0, 1])
            r = client.post(
                f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
            )
            job_id = r.json()["job"]["id"]
            assert wait_job(client, job_id)["state"] == "succeeded"
        wait_for_text(log, "succeeded in", proc, timeout=30)  # Celery's last line about the task
        text = log.read_text()  # before the stop: Celery prints (not logs) its shutdown notice
    finally:
        stop(proc)
    lines = records(text, "ready.")  # Celery prints its banner before this line; everything after is logs
    assert lines[0]["message"].endswith("ready.") and lines[0]["logger"].startswith("celery")
    ours = [r for r in lines if r["logger"].startswith("worker.")]
    assert ours and all((r.get("job_id"), r.get("learner")) == (job_id, name) for r in ours), ours
    messages = [r["message"] for r in lines if r.get("job_id") == job_id]
    assert any(m.startswith(f"job {job_id}: training on 48 images from a new network") for m in messages)
    steps = [m for m in messages if m.startswith(f"job {job_id}: step ")]
    assert (
        steps and steps[-1].split()[3].split("/")[0] == steps[-1].split()[3].split("/")[1]
    )  # reached the end
    assert any(m.startswith(f"job {job_id}: published version 1 after") for m in messages)
    assert messages[-1] == f"job {job_id}: succeeded"
    assert any(
        r["logger"].startswith("celery") and r.get("job_id") is None for r in lines
    )  # Celery's own lines


def test_logs_api_json_lines(settings: Settings):
    """`dgm serve --no-worker` with DGM_LOG_JSON=1: uvicorn's startup and access lines are JSON too."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**settings_env(settings), "DGM_LOG_JSON": "1", "DGM_ADMIN_KEY": ADMIN, "DGM_SWEEP_INTERVAL_S": "0"}
    log = settings.data_dir / "api-json.log"
    cmd = [sys.executable, "-m", "cli", "serve", "--no-worker", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_text(log, "Application startup complete", proc, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/v1/learners/nobody", headers=auth()).status_code == 404
    finally:
        stop(proc)
    lines = records(log.read_text(), "")
    access = [r["message"] for r in lines if r["logger"] == "uvicorn.access"]
    assert any('"GET /healthz HTTP/1.1" 200' in m for m in access), access
    assert any('"GET /v1/learners/nobody HTTP/1.1" 404' in m for m in access), access
    fields = [(r["method"], r["path"], r["status"]) for r in lines if r["logger"] == "uvicorn.access"]
    assert fields == [("GET", "/healthz", 200), ("GET", "/v1/learners/nobody", 404)]
    assert not any("\\u001b" in json.dumps(r) for r in lines)  # no terminal colour codes
    assert any(r["logger"] == "uvicorn.error" and "startup complete" in r["message"] for r in lines)


def test_logs_context_nests_and_exceptions_stay_on_one_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test-logs-{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with log_context(job_id=7, learner="digits"):
        with log_context(phase="publish"):
            try:
                raise ValueError("disk full\nsecond line")
            except ValueError:
                logger.exception("job %s failed", 7)
        logger.info("after", extra={"learner": "explicit"})
    logger.info("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["job_id"], first["learner"], first["phase"], first["level"]) == (
        7,
        "digits",
        "publish",
        "ERROR",
    )
    assert first["message"] == "job 7 failed" and "ValueError: disk full\nsecond line" in first["exception"]
    assert (second["learner"], "phase" in second) == (
        "explicit",
        False,
    )  # explicit extra wins; inner block left
    assert "job_id" not in third and third["message"] == "outside"

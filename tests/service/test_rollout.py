"""Canary and shadow rollout over HTTP (v1 and v2), with two real versions trained by a real worker on
PostgreSQL; and the version query parameter for every predict body type."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.live import live_server
from tests.service.support import ADMIN, ROOT, auth, digits, learned, png_bytes
from tests.service.test_metrics import delta, scrape


@pytest.fixture(scope="module")
def learner(client: TestClient) -> str:
    """Version 1 (digits 0, 1) and version 2 (adds 2, 3); each test starts from reset()."""
    return learned(client, "ro", [0, 1], [2, 3])


def reset(client: TestClient, name: str) -> None:
    """Version 1 active (whatever the regression gate decided for version 2) and no rollout."""
    if client.get(f"/v1/learners/{name}", headers=auth()).json()["rollout"] is not None:
        assert client.post(f"/v1/learners/{name}/rollout/abort", headers=auth()).status_code == 200
    r = client.post(f"/v1/learners/{name}/versions/1/activate", headers=auth())
    assert r.status_code == 200, r.text


def start(client: TestClient, name: str, **body) -> dict:
    r = client.post(f"/v1/learners/{name}/rollout", json=body, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def rollout_of(client: TestClient, name: str) -> dict | None:
    return client.get(f"/v1/learners/{name}", headers=auth()).json()["rollout"]


def v1(client: TestClient, name: str, x: np.ndarray, query: str = "", **body) -> dict:
    r = client.post(
        f"/v1/learners/{name}/predict{query}", json={"images": x.tolist(), **body}, headers=auth()
    )
    assert r.status_code == 200, r.text
    return r.json()


def v2(client: TestClient, name: str, x: np.ndarray, path: str = "") -> dict:
    tensor = {"name": "images", "datatype": "UINT8", "shape": list(x.shape), "data": x.tolist()}
    r = client.post(f"/v2/models/{name}{path}/infer", json={"inputs": [tensor]}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def v2_labels(body: dict) -> list[str]:
    return next(o["data"] for o in body["outputs"] if o["name"] == "label")


def canary_pick(n: int, percent: int) -> bool:
    """The documented split: request n (from 0) goes to the candidate."""
    return (n + 1) * percent // 100 > n * percent // 100


def test_rollout_canary_split_is_exact_over_v1_and_v2(client: TestClient, learner: str):
    reset(client, learner)
    out = start(client, learner, version=2, mode="canary", percent=20)
    assert out["active_version"] == 1
    assert (
        out["rollout"]
        == rollout_of(client, learner)
        == {"mode": "canary", "candidate_version": 2, "percent": 20}
    )
    x, _ = digits([0, 1], per_class=1, offset=100)
    before = scrape(client)
    answers = []
    for n in range(50):
        if n % 3 == 0:  # every third request through v2: one split for both protocols
            body = v2(client, learner, x)
            answers.append((int(body["model_version"]), body["parameters"]["served_by"]))
        else:
            body = v1(client, learner, x)
            answers.append((body["version"], body["served_by"]))
            assert len(body["classes"]) == (4 if body["version"] == 2 else 2)  # really that version's model
    after = scrape(client)
    assert answers == [(2, "candidate") if canary_pick(n, 20) else (1, "active") for n in range(50)]
    assert sum(v == 2 for v, _ in answers) == 10  # exactly 20 of every 100, spread: requests 4, 9, ...
    series = "dgm_predict_requests_total"
    assert delta(before, after, series, learner=learner, version="2", served_by="candidate") == 10
    assert delta(before, after, series, learner=learner, version="1", served_by="active") == 40
    assert delta(before, after, "dgm_predictions_total", learner=learner, version="2") == 10 * len(x)
    assert delta(before, after, "dgm_predictions_total", learner=learner, version="1") == 40 * len(x)

    # a pinned version bypasses the canary and does not move its count: requests 50..54 follow
    for query, number in (("?version=1", 1), ("?version=2", 2)):
        assert {
            (b["version"], b["served_by"]) for b in [v1(client, learner, x, query) for _ in range(3)]
        } == {(number, "pinned")}
    assert int(v2(client, learner, x, "/versions/1")["model_version"]) == 1
    nxt = [v1(client, learner, x)["version"] for _ in range(5)]
    assert nxt == [2 if canary_pick(n, 20) else 1 for n in range(50, 55)] == [1, 1, 1, 1, 2]


def test_rollout_canary_at_0_and_100_percent(client: TestClient, learner: str):
    reset(client, learner)
    x, _ = digits([3], per_class=1)
    start(client, learner, version=2, mode="canary", percent=0)
    assert {v1(client, learner, x)["version"] for _ in range(5)} == {1}
    start(client, learner, version=2, mode="canary", percent=100)
    assert {
        (v1(client, learner, x)["version"], v2(client, learner, x)["model_version"]) for _ in range(3)
    } == {(2, "2")}


def test_rollout_shadow_answers_from_active_and_counts_agreement_per_class(client: TestClient, learner: str):
    reset(client, learner)
    out = start(client, learner, version=2, mode="shadow")
    assert out["rollout"] == {"mode": "shadow", "candidate_version": 2, "percent": None}
    batches = [digits([c], per_class=3, offset=60)[0] for c in (0, 1, 2, 3)]
    before = scrape(client)
    active: list[str] = []
    for x in batches:
        body = v1(client, learner, x)
        assert (body["version"], body["served_by"], body["shadow_version"]) == (1, "active", 2)
        assert body["classes"] == ["0", "1"]
        active += [p["label"] for p in body["predictions"]]
    body = v2(client, learner, batches[2])
    assert (body["model_version"], body["parameters"]["served_by"]) == ("1", "active")
    active += v2_labels(body)
    # the candidate's own answers on the same batches; pinned requests bypass the shadow
    candidate: list[str] = []
    for x in [*batches, batches[2]]:
        pinned = v1(client, learner, x, version=2)
        assert (pinned["served_by"], pinned["shadow_version"]) == ("pinned", None)
        candidate += [p["label"] for p in pinned["predictions"]]
    after = scrape(client)

    expected = Counter((a, a == b) for a, b in zip(active, candidate, strict=True))
    assert expected[("0", False)] + expected[("1", False)] >= 1  # images of 2 and 3: v1 cannot agree
    shadow = "dgm_shadow_predictions_total"
    for label in ("0", "1"):
        for agree in (True, False):
            got = delta(
                before,
                after,
                shadow,
                learner=learner,
                candidate="2",
                **{"class": label},
                agree=str(agree).lower(),
            )
            assert got == expected[(label, agree)], (label, agree, got, expected)
    assert sum(expected.values()) == len(active) == 15
    series = "dgm_predict_requests_total"
    assert delta(before, after, series, learner=learner, version="1", served_by="active") == 5
    assert delta(before, after, series, learner=learner, version="2", served_by="pinned") == 5
    assert delta(before, after, series, learner=learner, version="2", served_by="candidate") == 0


def test_rollout_promote_and_abort(client: TestClient, learner: str):
    reset(client, learner)
    x, _ = digits([2], per_class=2)
    start(client, learner, version=2, mode="canary", percent=50)
    r = client.post(f"/v1/learners/{learner}/rollout/promote", headers=auth())
    assert r.status_code == 200, r.text
    assert (r.json()["active_version"], r.json()["rollout"]) == (2, None)
    versions = client.get(f"/v1/learners/{learner}/versions", headers=auth()).json()
    assert {v["number"]: v["active"] for v in versions} == {1: False, 2: True}
    assert {(b["version"], b["served_by"]) for b in [v1(client, learner, x) for _ in range(4)]} == {
        (2, "active")
    }

    start(client, learner, version=1, mode="shadow")  # an old version may be a candidate too
    r = client.post(f"/v1/learners/{learner}/rollout/abort", headers=auth())
    assert r.status_code == 200, r.text
    assert (r.json()["active_version"], r.json()["rollout"]) == (2, None)
    body = v1(client, learner, x)
    assert (body["version"], body["served_by"], body["shadow_version"]) == (2, "active", None)
    for action in ("promote", "abort"):
        r = client.post(f"/v1/learners/{learner}/rollout/{action}", headers=auth())
        assert r.status_code == 409 and f"no rollout to {action}" in r.json()["detail"], r.text

    # activating the candidate by hand ends its rollout as well
    start(client, learner, version=1, mode="canary", percent=10)
    assert client.post(f"/v1/learners/{learner}/versions/1/activate", headers=auth()).status_code == 200
    assert rollout_of(client, learner) is None


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"version": 9, "mode": "canary", "percent": 10}, 404, "has no version 9"),
        ({"version": 2, "mode": "blue", "percent": 10}, 422, "mode"),
        ({"version": 2, "mode": "canary", "percent": 150}, 422, "percent"),
        ({"version": 2, "mode": "canary", "percent": -1}, 422, "percent"),
        ({"version": 2, "mode": "canary", "percent": 12.5}, 422, "percent"),
        ({"version": 2, "mode": "canary"}, 422, "a canary needs percent"),
        ({"version": 2, "mode": "shadow", "percent": 10}, 422, "percent applies to a canary only"),
        ({"mode": "shadow"}, 422, "version"),
        ({"version": 1, "mode": "shadow"}, 409, "version 1 is already active"),
    ],
)
def test_rollout_bad_requests_name_the_problem_and_change_nothing(
    client: TestClient, learner: str, body: dict, status: int, says: str
):
    reset(client, learner)
    kept = start(client, learner, version=2, mode="canary", percent=30)["rollout"]
    r = client.post(f"/v1/learners/{learner}/rollout", json=body, headers=auth())
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert rollout_of(client, learner) == kept


def test_rollout_refuses_learner_without_versions_purged_candidate_and_non_admin(
    client: TestClient, learner: str, make_learner, pg_settings: Settings
):
    r = client.post("/v1/learners/nope-x/rollout", json={"version": 1, "mode": "shadow"}, headers=auth())
    assert r.status_code == 404 and "no learner named" in r.json()["detail"]
    empty = make_learner()
    r = client.post(f"/v1/learners/{empty}/rollout", json={"version": 1, "mode": "shadow"}, headers=auth())
    assert r.status_code == 409 and "no active version" in r.json()["detail"], r.text
    key = client.post("/v1/keys", json={"name": "p", "scopes": ["predict"]}, headers=auth()).json()["key"]
    for path in ("rollout", "rollout/promote", "rollout/abort"):
        r = client.post(
            f"/v1/learners/{learner}/{path}", json={"version": 2, "mode": "shadow"}, headers=auth(key)
        )
        assert r.status_code == 403 and "'admin' scope" in r.json()["detail"]

    reset(client, learner)
    start(client, learner, version=2, mode="canary", percent=100)
    engine = sa.create_engine(pg_settings.database_url, poolclass=sa.pool.NullPool)
    where = "learner_id = (SELECT id FROM learners WHERE name = :n) AND number = 2"
    try:
        with engine.begin() as c:  # what forgetting a class does to an old version (issue 11)
            c.execute(sa.text(f"UPDATE model_versions SET status = 'purged' WHERE {where}"), {"n": learner})
        x, _ = digits([2], per_class=1)
        assert (v1(client, learner, x)["version"], v1(client, learner, x)["served_by"]) == (1, "active")
        r = client.post(
            f"/v1/learners/{learner}/rollout", json={"version": 2, "mode": "shadow"}, headers=auth()
        )
        assert r.status_code == 409 and "version 2 is purged" in r.json()["detail"], r.text
        r = client.post(f"/v1/learners/{learner}/rollout/promote", headers=auth())
        assert r.status_code == 409 and "version 2 is purged" in r.json()["detail"], r.text
        assert client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"] == 1
    finally:
        with engine.begin() as c:
            c.execute(
                sa.text(f"UPDATE model_versions SET status = 'published' WHERE {where}"), {"n": learner}
            )
        engine.dispose()


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def test_predict_version_query_parameter_for_every_body_type(client: TestClient, learner: str):
    """?version= pins the version whatever the body type; a body version that differs is a 400."""
    reset(client, learner)
    start(client, learner, version=2, mode="canary", percent=0)  # pinning must also beat the rollout
    x, _ = digits([2, 3], per_class=1)
    url = f"/v1/learners/{learner}/predict"
    files = [("files", (f"{i}.png", png_bytes(img))) for i, img in enumerate(x)]
    npy = {"content": npy_bytes(x), "headers": {**auth(), "content-type": "application/x-npy"}}
    for r in (
        client.post(url + "?version=2", json={"images": x.tolist()}, headers=auth()),
        client.post(url + "?version=2", files=files, headers=auth()),
        client.post(url + "?version=2", **npy),
        client.post(url + "?version=2", json={"images": x.tolist(), "version": 2}, headers=auth()),
        client.post(url + "?version=2", files=files, data={"version": "2"}, headers=auth()),
        client.post(url, json={"images": x.tolist(), "version": 2}, headers=auth()),
        client.post(url, files=files, data={"version": "2"}, headers=auth()),
    ):
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["served_by"], len(r.json()["classes"])) == (2, "pinned", 4)
    body = v2(client, learner, x, "/versions/2")  # v2's equivalent: the version in the path
    assert (body["model_version"], body["parameters"]["served_by"]) == ("2", "pinned")
    for r in (client.post(url, json={"images": x.tolist()}, headers=auth()), client.post(url, **npy)):
        assert (r.json()["version"], r.json()["served_by"]) == (1, "active")

    for r, where in (
        (
            client.post(url + "?version=2", json={"images": x.tolist(), "version": 1}, headers=auth()),
            "JSON body",
        ),
        (client.post(url + "?version=2", files=files, data={"version": "1"}, headers=auth()), "form field"),
    ):
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "query string asks for version 2" in detail and f"the {where} for version 1" in detail
    r = client.post(url + "?version=two", **npy)
    assert r.status_code == 422 and "version must be an integer" in r.json()["detail"]
    r = client.post(url + "?version=9", json={"images": x.tolist()}, headers=auth())
    assert r.status_code == 404 and "has no version 9" in r.json()["detail"]


def dgm(url: str, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DGM_URL=url, DGM_KEY=ADMIN, PYTHONPATH=str(ROOT))
    env.pop("DGM_ADMIN_KEY", None)
    cmd = [sys.executable, "-m", "cli", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"rc {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def test_rollout_cli_start_show_promote_abort(client: TestClient, learner: str, pg_settings: Settings):
    reset(client, learner)
    with live_server(pg_settings) as url:
        out = ok(dgm(url, "rollout", "start", learner, "2", "--canary", "25"))
        assert "rollout: canary of version 2 (25% of requests)" in out
        assert rollout_of(client, learner) == {"mode": "canary", "candidate_version": 2, "percent": 25}
        assert "rollout: canary of version 2 (25% of requests)" in ok(dgm(url, "learners", "show", learner))
        shown = json.loads(ok(dgm(url, "rollout", "start", learner, "2", "--shadow", "--json")))
        assert shown["rollout"] == {"mode": "shadow", "candidate_version": 2, "percent": None}
        assert "rollout aborted; active version 1" in ok(dgm(url, "rollout", "abort", learner))
        assert rollout_of(client, learner) is None
        done = dgm(url, "rollout", "abort", learner)
        assert done.returncode == 3 and "no rollout to abort" in done.stderr, done.stderr
        done = dgm(url, "rollout", "start", learner, "2", "--canary", "150")
        assert done.returncode == 3 and "percent" in done.stderr, done.stderr
        assert rollout_of(client, learner) is None
        ok(dgm(url, "rollout", "start", learner, "2", "--canary", "10"))
        assert "promoted: the candidate is active; active version 2" in ok(
            dgm(url, "rollout", "promote", learner)
        )
    shown = client.get(f"/v1/learners/{learner}", headers=auth()).json()
    assert (shown["active_version"], shown["rollout"]) == (2, None)


def test_rollout_dashboard_shows_the_rollout(client: TestClient, learner: str):
    reset(client, learner)
    with TestClient(client.app) as browser:  # its own cookie jar
        r = browser.post(
            "/dashboard/login", data={"key": ADMIN, "next": "/dashboard"}, follow_redirects=False
        )
        assert r.status_code in (302, 303), r.text
        assert 'id="rollout"' not in browser.get(f"/dashboard/{learner}").text
        start(client, learner, version=2, mode="canary", percent=20)
        page = " ".join(browser.get(f"/dashboard/{learner}").text.split())
        assert '<span class="warn" id="rollout">canary of v2 (20% of requests)</span>' in page
        start(client, learner, version=2, mode="shadow")
        page = " ".join(browser.get(f"/dashboard/{learner}").text.split())
        assert '<span class="warn" id="rollout">shadow of v2 (scored beside every request)</span>' in page

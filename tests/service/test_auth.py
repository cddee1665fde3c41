"""API keys: 401 without or with a wrong key, 403 without the scope; health and docs are open."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.support import ADMIN, TINY, auth, digits, npz_bytes, snapshot


def new_key(client: TestClient, *scopes: str) -> tuple[int, str]:
    r = client.post("/v1/keys", json={"name": "k", "scopes": list(scopes)}, headers=auth())
    assert r.status_code == 201, r.text
    assert r.json()["key"].startswith("dgm_") and r.json()["scopes"] == sorted(scopes)
    return r.json()["id"], r.json()["key"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/learners"),
        ("POST", "/v1/learners"),
        ("GET", "/v1/learners/x/history"),
        ("POST", "/v1/learners/x/tasks"),
        ("POST", "/v1/learners/x/predict"),
        ("GET", "/v1/jobs/1"),
        ("POST", "/v1/jobs/1/cancel"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/learners/x/versions/1/samples.png"),
    ],
)
def test_auth_missing_or_wrong_key_is_401(client: TestClient, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN}"}):
        r = client.request(method, path, headers=headers)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.json()["error"] == "Unauthorized" and "Bearer" in r.json()["detail"]


def test_auth_open_routes(client: TestClient):
    assert client.get("/healthz").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/v1/learners/{name}/predict" in client.get("/openapi.json").json()["paths"]
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "artifact_store": "ok"}


def test_auth_scopes_are_enforced(client: TestClient, pg_settings: Settings, trained: str):
    _, predict_key = new_key(client, "predict")
    _, train_key = new_key(client, "train")
    x, y = digits([6, 7])
    before = snapshot(pg_settings)
    r = client.post(
        f"/v1/learners/{trained}/tasks",
        files={"file": ("t.npz", npz_bytes(x=x, y=y))},
        headers=auth(predict_key),
    )
    assert r.status_code == 403 and "'train' scope" in r.json()["detail"]
    r = client.post("/v1/learners", json={**TINY, "name": "scoped"}, headers=auth(predict_key))
    assert r.status_code == 403
    r = client.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=auth(train_key))
    assert r.status_code == 403 and "'admin' scope" in r.json()["detail"]
    r = client.post(f"/v1/learners/{trained}/versions/1/activate", headers=auth(train_key))
    assert r.status_code == 403
    assert snapshot(pg_settings) == before

    ok = client.post(
        f"/v1/learners/{trained}/predict", json={"images": [x[0].tolist()]}, headers=auth(predict_key)
    )
    assert ok.status_code == 200
    r = client.post(
        f"/v1/learners/{trained}/predict", json={"images": [x[0].tolist()]}, headers=auth(train_key)
    )
    assert r.status_code == 403 and "'predict' scope" in r.json()["detail"]
    assert client.get(f"/v1/learners/{trained}", headers=auth(predict_key)).status_code == 200


def test_auth_revoked_key_is_401_and_keys_are_stored_hashed(client: TestClient, pg_settings: Settings):
    key_id, key = new_key(client, "predict")
    assert client.get("/v1/learners", headers=auth(key)).status_code == 200
    listed = client.get("/v1/keys", headers=auth()).json()
    assert key not in str(listed) and any(k["id"] == key_id for k in listed)
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_settings.database_url)
    with engine.connect() as c:
        stored = c.execute(text("SELECT key_hash FROM api_keys WHERE id = :i"), {"i": key_id}).scalar_one()
    engine.dispose()
    assert stored != key and len(stored) == 64
    assert client.delete(f"/v1/keys/{key_id}", headers=auth()).json()["revoked"] is True
    r = client.get("/v1/learners", headers=auth(key))
    assert r.status_code == 401
    assert client.delete("/v1/keys/99999", headers=auth()).status_code == 404
    r = client.post("/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=auth())
    assert r.status_code == 422


OPEN = {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
OPEN |= {"/v2"}  # v2 server metadata (name, version, extensions): what a client probes before health
OPEN_PREFIXES = ("/v2/health/", "/dashboard")  # the dashboard shows a login form; its data needs a key


def route_scope(dependant) -> tuple[bool, str | None]:
    """(guarded, scope) from a route's dependency tree: guarded when a `require(scope)` check is in it."""
    for dep in dependant.dependencies:
        if hasattr(dep.call, "scope"):
            return True, dep.call.scope
        guarded, scope = route_scope(dep)
        if guarded:
            return guarded, scope
    return False, None


def concrete(path: str) -> str:
    import re

    return re.sub(
        r"\{(\w+)(:\w+)?\}",
        lambda m: "1" if m.group(1) in ("number", "job_id", "key_id", "v", "version") else "x",
        path,
    )


def api_routes(routes):
    """The app's APIRoutes; FastAPI 0.165 keeps included routers as wrappers around the originals."""
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


def test_auth_every_route_is_guarded_401_and_403(client: TestClient):
    """Every route but health, docs and metrics: 401 without a key, 403 with a key lacking its scope."""
    keys = {scope: new_key(client, scope)[1] for scope in ("predict", "train")}
    checked = 0
    paths = set(client.get("/openapi.json").json()["paths"])
    for route in api_routes(client.app.routes):
        assert route.path_format in paths or not route.include_in_schema  # {label:path} -> {label}
        if route.path in OPEN or route.path.startswith(OPEN_PREFIXES):
            continue
        guarded, scope = route_scope(route.dependant)
        assert guarded, f"{route.path} answers without an API key"
        for method in route.methods:
            path = concrete(route.path)
            for headers in ({}, {"Authorization": "Bearer nope"}):
                r = client.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            if scope in ("predict", "train", "admin"):
                other = keys["train" if scope == "predict" else "predict"]
                r = client.request(method, path, headers=auth(other))
                assert r.status_code == 403 and f"'{scope}' scope" in r.json()["detail"], (
                    method,
                    path,
                    r.text,
                )
            checked += 1
    assert checked >= 15


def test_auth_predict_rate_limit_per_key(client: TestClient, pg_settings: Settings, trained: str):
    """With DGM_PREDICT_LIMIT set, a key past its quota gets 429 and Retry-After; others do not."""
    from service.app import create_app

    limited = pg_settings.model_copy(update={"predict_limit": "3/hour"})
    x, _ = digits([0])
    body = {"images": [x[0].tolist()]}
    _, first = new_key(client, "predict")
    _, second = new_key(client, "predict")
    with TestClient(create_app(limited)) as c:
        codes = [
            c.post(f"/v1/learners/{trained}/predict", json=body, headers=auth(first)).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429], codes
        r = c.post(f"/v1/learners/{trained}/predict", json=body, headers=auth(first))
        assert r.json()["error"] == "TooManyRequests" and int(r.headers["retry-after"]) >= 1
        assert "retry in" in r.json()["detail"]
        assert c.post(f"/v1/learners/{trained}/predict", json=body, headers=auth(second)).status_code == 200
        assert c.get("/v1/learners", headers=auth(first)).status_code == 200  # only predict is limited


# ----- learner scope (issue 12) on every route ---------------------------------------------------
# Path parameters that the learner-scope check (service.deps.check_reach, and get_viewer on the dashboard)
# knows: `name` is a learner, `job_id` a job (which belongs to a learner); the others only narrow a
# learner route (or name a key or session, which keys.py scopes itself).
SCOPING_PARAMS = {"name", "job_id"}
OTHER_PARAMS = {"number", "version", "kind", "label", "key_id", "session_id"}
# Guarded routes that name no learner in their path, and why each cannot show another team's learner.
NOT_LEARNER_SCOPED = {
    "/v1/learners": "GET lists only what the key reaches; POST creates only inside it (test_scope.py)",
    "/v1/keys": "a scoped admin lists only keys within its own scope, and creates none wider",
    "/v1/keys/{key_id}": "a key wider than the caller's answers 404, like an unknown key",
    "/v1/sessions": "a scoped admin lists only the sessions of keys within its scope",
    "/v1/sessions/{session_id}": "sessions of wider keys answer 404, like an unknown session",
    "/metrics": "its labels name every learner: refused to scoped keys (403)",
    "/dashboard": "the learners page lists only what the session's key reaches",
    "/dashboard/login": "signs in; shows no learner",
    "/dashboard/logout": "signs out; shows no learner",
}


def fill(path: str, **values: object) -> str:
    import re

    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: str(values.get(m.group(1), "1")), path)


def not_hidden(r) -> bool:  # noqa: ANN001
    """The answer is not the 'no such learner/job' 404 (the route itself may still refuse the request)."""
    if r.status_code != 404 or not r.headers.get("content-type", "").startswith("application/json"):
        return True
    return not any(k in r.json()["error"] for k in ("UnknownLearner", "UnknownJob"))


def test_auth_learner_scope_on_every_route(client: TestClient, pg_settings: Settings, trained: str):
    """A key scoped to learners gets, on every route that names another learner or its job, exactly the
    404 of a learner or job that does not exist, and changes nothing; its own learners answer as usual.
    Fails when a route has a path parameter the scope check does not know, or names no learner and is
    not listed in NOT_LEARNER_SCOPED with a reason."""
    import uuid

    from service.views import unknown_job, unknown_learner

    tag = uuid.uuid4().hex[:6]
    r = client.post(
        "/v1/keys", json={"name": "scoped", "scopes": ["admin"], "learners": [f"in-{tag}-*"]}, headers=auth()
    )
    assert r.status_code == 201, r.text
    scoped = r.json()["key"]
    made = iter(range(1000))

    def inside() -> str:  # a fresh in-scope learner per call: a route may delete or change it
        name = f"in-{tag}-{next(made)}"
        r = client.post("/v1/learners", json={**TINY, "name": name}, headers=auth(scoped))
        assert r.status_code == 201, r.text
        return name

    before = client.get(f"/v1/learners/{trained}/history", headers=auth()).json()
    job = before["jobs"][0]["id"]
    gone, missing_job = f"gone-{tag}", 2**31 - 7
    browser = TestClient(client.app)
    assert browser.post("/dashboard/login", data={"key": scoped}, follow_redirects=False).status_code == 303

    walked = []
    for route in api_routes(client.app.routes):
        params = set(route.param_convertors)
        unknown = params - SCOPING_PARAMS - OTHER_PARAMS
        assert not unknown, (
            f"{route.path}: path parameter(s) {sorted(unknown)} are unknown to the learner-scope check; "
            "if they name a learner or something of one, teach service.deps.check_reach and this test"
        )
        if not params & SCOPING_PARAMS:
            listed = (
                route.path in NOT_LEARNER_SCOPED or route.path in OPEN or route.path.startswith("/v2/health/")
            )
            assert listed, (
                f"{route.path} names no learner in its path: scope what it shows by the caller's learners "
                "and add it to NOT_LEARNER_SCOPED with the reason it cannot show another team's learner"
            )
            continue
        dashboard = route.path.startswith("/dashboard/")
        c, headers = (browser, {}) if dashboard else (client, auth(scoped))
        for method in sorted(route.methods):
            where = (method, route.path)
            if "name" in params:
                hidden = c.request(method, fill(route.path, name=trained, job_id=job), headers=headers)
                absent = c.request(method, fill(route.path, name=gone, job_id=job), headers=headers)
                assert hidden.status_code == absent.status_code == 404, (where, hidden.text, absent.text)
                assert hidden.json()["detail"] == unknown_learner(trained).detail, (where, hidden.text)
                assert hidden.text.replace(trained, gone) == absent.text, where
                own = inside()
                r = c.request(method, fill(route.path, name=own, job_id=job), headers=headers)
                assert not_hidden(r) or "job_id" in params, (where, r.text)  # own learner: not hidden
            if "job_id" in params:
                own = inside() if "name" in params else trained
                hidden = c.request(method, fill(route.path, name=own, job_id=job), headers=headers)
                absent = c.request(method, fill(route.path, name=own, job_id=missing_job), headers=headers)
                assert hidden.status_code == absent.status_code == 404, (where, hidden.text, absent.text)
                if "name" not in params:
                    assert hidden.json()["detail"] == unknown_job(job).detail, (where, hidden.text)
                assert hidden.text.replace(f"job {job}", f"job {missing_job}") == absent.text, where
            walked.append(where)
    after = client.get(f"/v1/learners/{trained}/history", headers=auth()).json()
    assert after == before  # nothing the scoped key sent changed the hidden learner
    assert len(walked) >= 20, walked
    assert any(p.startswith("/v2/") for _, p in walked) and any(
        p.startswith("/dashboard/") for _, p in walked
    )

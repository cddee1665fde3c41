"""Dashboard sessions (issue 12): the cookie is a random session token, not the key; it expires, can be
ended by sign-out, by an admin or by revoking its key, and is no API key on /v1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from service.app import create_app
from service.routes.dashboard import COOKIE
from tests.service.support import ADMIN, auth


@pytest.fixture
def browser(client: TestClient) -> Iterator[TestClient]:
    with TestClient(client.app) as c:
        yield c


def new_key(client: TestClient, *scopes: str) -> dict:
    r = client.post("/v1/keys", json={"name": "dash-session", "scopes": list(scopes)}, headers=auth())
    assert r.status_code == 201, r.text
    return r.json()


def sign_in(c: TestClient, key: str) -> str:
    r = c.post("/dashboard/login", data={"key": key, "next": "/dashboard"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.cookies[COOKIE]


def stored_hashes(settings: Settings) -> list[str]:
    engine = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        rows = list(c.execute(sa.text("SELECT token_hash FROM dashboard_sessions")).scalars())
    engine.dispose()
    return rows


def test_sessions_cookie_is_a_random_token_stored_hashed(
    client: TestClient, browser: TestClient, pg_settings: Settings
):
    key = new_key(client, "predict")["key"]
    token = sign_in(browser, key)
    assert key not in token and len(token) >= 40
    assert token != sign_in(browser, key)  # a new random token per sign-in
    hashes = stored_hashes(pg_settings)
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    assert token not in hashes and all(len(h) == 64 for h in hashes)
    assert browser.get("/dashboard").status_code == 200


def test_sessions_stolen_cookie_is_401_on_v1(client: TestClient, browser: TestClient):
    token = sign_in(browser, ADMIN)
    for headers in (
        {"Authorization": f"Bearer {token}"},
        {"X-API-Key": token},
        {"Cookie": f"{COOKIE}={token}"},
    ):
        for path in ("/v1/learners", "/v1/keys", "/v1/sessions"):
            r = client.get(path, headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "Unauthorized", (headers, path, r.text)


def test_sessions_expire(client: TestClient, pg_settings: Settings):
    """The server refuses the token after DGM_SESSION_TTL_S, even when a client keeps sending it."""
    short = pg_settings.model_copy(update={"session_ttl_s": 1})
    with TestClient(create_app(short)) as c:
        r = c.post("/dashboard/login", data={"key": ADMIN}, follow_redirects=False)
        assert "max-age=1" in r.headers["set-cookie"].lower()
        token = r.cookies[COOKIE]
        assert c.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 200
        time.sleep(1.5)
        r = c.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"})
        assert r.status_code == 401 and 'id="login"' in r.text
    listed = client.get("/v1/sessions", headers=auth()).json()
    assert any(not s["active"] and not s["revoked"] for s in listed)  # expired, shown as inactive


def test_sessions_admin_lists_and_revokes_a_session(client: TestClient, browser: TestClient):
    key = new_key(client, "train")
    token = sign_in(browser, key["key"])
    listed = client.get("/v1/sessions", headers=auth())
    assert listed.status_code == 200 and token not in listed.text
    mine = [s for s in listed.json() if s["key_id"] == key["id"]]
    assert len(mine) == 1 and mine[0]["active"] and mine[0]["key_name"] == "dash-session"
    r = client.delete(f"/v1/sessions/{mine[0]['id']}", headers=auth())
    assert r.status_code == 200 and r.json()["revoked"] is True and r.json()["active"] is False
    r = browser.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"})
    assert r.status_code == 401 and 'id="login"' in r.text
    r = client.delete("/v1/sessions/99999999", headers=auth())
    assert r.status_code == 404 and "GET /v1/sessions" in r.json()["detail"]
    r = client.get("/v1/sessions", headers=auth(new_key(client, "train")["key"]))
    assert r.status_code == 403 and "'admin' scope" in r.json()["detail"]


def test_sessions_revoking_the_key_ends_its_sessions(client: TestClient, browser: TestClient):
    key = new_key(client, "predict")
    token = sign_in(browser, key["key"])
    assert client.delete(f"/v1/keys/{key['id']}", headers=auth()).status_code == 200
    assert browser.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 401
    ended = [s for s in client.get("/v1/sessions", headers=auth()).json() if s["key_id"] == key["id"]]
    assert ended and all(s["revoked"] and not s["active"] for s in ended)


def test_sessions_sign_out_ends_the_session_on_the_server(browser: TestClient):
    token = sign_in(browser, ADMIN)
    r = browser.post("/dashboard/logout", follow_redirects=False)
    assert r.status_code == 303
    assert (
        browser.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 401
    )  # a kept copy is dead too


def test_sessions_of_the_bootstrap_key_end_when_it_changes(client: TestClient, pg_settings: Settings):
    """Sessions of DGM_ADMIN_KEY belong to a key row that authenticates nothing itself; a new admin key
    (rotation) ends the old key's sessions."""
    token = sign_in(TestClient(client.app), ADMIN)
    rotated = pg_settings.model_copy(update={"admin_key": SecretStr("a-new-admin-key")})
    with TestClient(create_app(rotated)) as c:
        assert c.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 401
    assert client.get("/dashboard", headers={"Cookie": f"{COOKIE}={token}"}).status_code == 200
    bootstrap = [k for k in client.get("/v1/keys", headers=auth()).json() if k["prefix"] == "(env)"]
    assert len(bootstrap) == 1 and bootstrap[0]["scopes"] == ["admin", "predict", "train"]

"""Keys scoped to learners (issue 12): what a scoped key lists, creates and manages; bad scopes are 400.

The route-by-route 404 for learners out of reach is test_auth.test_auth_learner_scope_on_every_route.
"""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.support import TINY, auth, digits, snapshot


def key(client: TestClient, scopes: list[str], learners: list[str] | None, by: str | None = None) -> dict:
    body = {"name": "scoped", "scopes": scopes, "learners": learners}
    r = client.post("/v1/keys", json=body, headers=auth(by) if by else auth())
    assert r.status_code == 201, r.text
    return r.json()


def learner(client: TestClient, name: str, by: str | None = None) -> None:
    r = client.post("/v1/learners", json={**TINY, "name": name}, headers=auth(by) if by else auth())
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def team(client: TestClient) -> str:
    """Learners <tag>-a1, <tag>-a2, <tag>-b1, <tag>-c, <tag>_z and <tag>yz ('_' is a LIKE wildcard)."""
    tag = f"t{uuid.uuid4().hex[:6]}"
    for suffix in ("-a1", "-a2", "-b1", "-c", "_z", "yz"):
        learner(client, tag + suffix)
    return tag


def names(r) -> set[str]:  # noqa: ANN001
    assert r.status_code == 200, r.text
    return {lr["name"] for lr in r.json()}


def test_scope_listing_shows_only_what_the_key_reaches(client: TestClient, team: str):
    k = key(client, ["predict"], [f"{team}-a*", f"{team}-c"])
    assert k["learners"] == sorted([f"{team}-a*", f"{team}-c"])
    assert names(client.get("/v1/learners", headers=auth(k["key"]))) == {
        f"{team}-a1",
        f"{team}-a2",
        f"{team}-c",
    }
    underscore = key(client, ["predict"], [f"{team}_*"])  # '_' matches itself only, not any character
    assert names(client.get("/v1/learners", headers=auth(underscore["key"]))) == {f"{team}_z"}
    everyone = names(client.get("/v1/learners", headers=auth()))
    assert {f"{team}-b1", f"{team}yz"} <= everyone


def test_scope_dashboard_lists_and_opens_only_reached_learners(client: TestClient, team: str):
    k = key(client, ["predict"], [f"{team}-a*"])
    with TestClient(client.app) as browser:
        assert (
            browser.post("/dashboard/login", data={"key": k["key"]}, follow_redirects=False).status_code
            == 303
        )
        page = browser.get("/dashboard").text
        assert f'href="/dashboard/{team}-a1"' in page and f'href="/dashboard/{team}-a2"' in page
        assert f"{team}-b1" not in page and f"{team}-c" not in page
        assert browser.get(f"/dashboard/{team}-a1").status_code == 200
        hidden, absent = browser.get(f"/dashboard/{team}-b1"), browser.get(f"/dashboard/{team}-zz")
        assert hidden.status_code == absent.status_code == 404
        assert hidden.text.replace(f"{team}-b1", f"{team}-zz") == absent.text


def test_scope_predict_and_v2_work_inside_the_scope(client: TestClient, trained: str):
    k = key(client, ["predict"], [trained])
    x, _ = digits([0])
    r = client.post(
        f"/v1/learners/{trained}/predict", json={"images": [x[0].tolist()]}, headers=auth(k["key"])
    )
    assert r.status_code == 200 and r.json()["learner"] == trained, r.text
    body = {"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 8, 8], "data": x[0].tolist()}]}
    r = client.post(f"/v2/models/{trained}/infer", json=body, headers=auth(k["key"]))
    assert r.status_code == 200 and r.json()["model_name"] == trained, r.text
    assert names(client.get("/v1/learners", headers=auth(k["key"]))) == {trained}


def test_scope_learner_creation_only_inside_the_scope(client: TestClient, pg_settings: Settings, team: str):
    k = key(client, ["train"], [f"{team}-a*"])
    before = snapshot(pg_settings)
    for outside in (f"{team}-b2", f"{team}-b1"):  # a new name and an existing one: both 403, no 409 leak
        r = client.post("/v1/learners", json={**TINY, "name": outside}, headers=auth(k["key"]))
        assert r.status_code == 403 and f"{team}-a*" in r.json()["detail"], r.text
        assert repr(outside) in r.json()["detail"]
    assert snapshot(pg_settings) == before
    learner(client, f"{team}-a3", by=k["key"])
    assert f"{team}-a3" in names(client.get("/v1/learners", headers=auth(k["key"])))


@pytest.mark.parametrize(
    "learners",
    [[], ["bad name"], ["*"], ["x*y"], ["-lead"], ["a" * 65], ["ok", "no/slash*"], ["n\x00"]],
)
def test_scope_bad_learner_scope_is_400_and_stores_nothing(
    client: TestClient, pg_settings: Settings, learners: list[str]
):
    before = snapshot(pg_settings)
    r = client.post(
        "/v1/keys", json={"name": "bad", "scopes": ["predict"], "learners": learners}, headers=auth()
    )
    assert r.status_code == 400 and r.json()["error"] == "InvalidInput", r.text
    assert "learners" in r.json()["detail"]
    assert snapshot(pg_settings) == before


def test_scope_admin_cannot_create_or_manage_wider_keys(client: TestClient, pg_settings: Settings, team: str):
    admin = key(client, ["admin"], [f"{team}-a*"])
    before = snapshot(pg_settings)
    for wider in (None, [f"{team}-*"], [f"{team}-b1"], [f"{team}-a1", f"{team}-c"]):
        r = client.post(
            "/v1/keys",
            json={"name": "w", "scopes": ["predict"], "learners": wider},
            headers=auth(admin["key"]),
        )
        assert r.status_code == 403 and f"reaches only the learners {team}-a*" in r.json()["detail"], r.text
    assert snapshot(pg_settings) == before
    narrow = key(client, ["predict"], [f"{team}-a1", f"{team}-a9*"], by=admin["key"])
    assert narrow["learners"] == [f"{team}-a1", f"{team}-a9*"]

    unscoped = key(client, ["predict"], None)
    listed = {k["id"] for k in client.get("/v1/keys", headers=auth(admin["key"])).json()}
    assert {admin["id"], narrow["id"]} <= listed and unscoped["id"] not in listed
    assert all(k["learners"] is not None for k in client.get("/v1/keys", headers=auth(admin["key"])).json())
    r = client.delete(f"/v1/keys/{unscoped['id']}", headers=auth(admin["key"]))
    assert r.status_code == 404 and r.json()["detail"] == client.delete(
        "/v1/keys/999999", headers=auth(admin["key"])
    ).json()["detail"].replace("999999", str(unscoped["id"]))
    assert client.get("/v1/learners", headers=auth(unscoped["key"])).status_code == 200  # still valid
    assert client.delete(f"/v1/keys/{narrow['id']}", headers=auth(admin["key"])).json()["revoked"] is True


def test_scope_metrics_need_an_unscoped_admin(client: TestClient, team: str):
    admin = key(client, ["admin"], [f"{team}-a*"])
    r = client.get("/metrics", headers=auth(admin["key"]))
    assert r.status_code == 403 and "every learner" in r.json()["detail"]
    assert client.get("/metrics", headers=auth()).status_code == 200

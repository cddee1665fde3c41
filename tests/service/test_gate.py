"""The regression gate through the API, a real worker on Redis and PostgreSQL, the dashboard and the CLI.

A one-epoch tiny task forgets the earlier task's digits the way issue 9's learner did: it answers
nearly all of them with its own new classes, so the gate's new-class limit (gate_max_to_new, 0.5) holds
the second version on real data (no monkeypatching); gate_min_fidelity 0.0 keeps memory fidelity out
of these verdicts (tests/core/test_gate.py covers the fidelity rule and the accuracy rule's numbers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cli.main import main as dgm
from core.settings import Settings
from tests.service.live import live_server
from tests.service.support import ADMIN, auth, digits, snapshot, upload, wait_job

TINY_GATE = ["always", 0.05, 0.8, 0.5, 0.4]  # tests.service.support.TINY's policy, default thresholds
STRICT = {"auto_activate": "gate", "gate_max_drop": 0.0, "gate_min_fidelity": 0.0}


@pytest.fixture(scope="module")
def server(pg_settings: Settings, pg_worker: None) -> Iterator[str]:
    with live_server(pg_settings) as url:
        yield url


def train(client: TestClient, name: str, classes: list[int], holdout: float = 0.25) -> dict:
    job = wait_job(client, upload(client, name, classes, holdout=holdout))
    assert job["state"] == "succeeded", job
    return job


def versions(client: TestClient, name: str) -> dict[int, dict]:
    return {v["number"]: v for v in client.get(f"/v1/learners/{name}/versions", headers=auth()).json()}


def predict_version(client: TestClient, name: str) -> int:
    x, _ = digits([0], per_class=1)
    r = client.post(f"/v1/learners/{name}/predict", json={"images": [x[0].tolist()]}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["version"]


def cli(server: str, capsys: pytest.CaptureFixture, *argv: str) -> str:
    capsys.readouterr()
    assert dgm([*argv, "--url", server, "--key", ADMIN]) == 0
    return capsys.readouterr().out


def test_gate_holds_old_images_answered_with_new_classes_keeps_the_active_version_and_an_admin_activates_it(
    client: TestClient, make_learner, server: str, capsys: pytest.CaptureFixture
):
    name = make_learner(**STRICT)
    shown = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert (shown["auto_activate"], shown["gate_max_drop"], shown["gate_min_fidelity"]) == ("gate", 0.0, 0.0)
    first = train(client, name, [0, 1])["result"]["gate"]
    assert first["decision"] == "activated" and not first["gated"]
    assert "nothing to compare against" in first["note"]

    gate = train(client, name, [2, 3])["result"]["gate"]
    assert gate["decision"] == "held" and gate["gated"], gate
    # task 1 is the only earlier task: its real digits now go to the new classes
    reason = next(r for r in gate["reasons"] if "to_new" in r)
    assert reason["task"] == 1 and reason["to_new"] > 0.5 and gate["max_to_new"] == 0.5
    assert "compared among the classes the active version knows" in gate["note"]
    v = versions(client, name)
    assert v[2]["status"] == "held" and v[2]["hold_reasons"] == gate["reasons"] and not v[2]["active"]
    assert v[1]["active"] and v[1]["status"] == "published"
    assert v[2]["accuracy"]["1"] <= 1 - reason["to_new"] + 1e-9  # what went to new classes is wrong
    learner = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert learner["active_version"] == 1 and learner["held_versions"] == [2]
    assert learner["classes"] == ["0", "1"] and predict_version(client, name) == 1  # v1 keeps serving

    metrics = client.get("/metrics", headers=auth()).text
    assert f'dgm_versions_held_total{{by="gate",learner="{name}"}} 1.0' in metrics
    with TestClient(client.app) as browser:  # its own cookie jar: the session client stays clean
        assert browser.post("/dashboard/login", data={"key": ADMIN, "next": "/dashboard"}).status_code == 200
        page = browser.get(f"/dashboard/{name}").text
    assert 'id="held-2"' in page and 'id="held-versions"' in page and "activate held v2" in page
    said = f"task 1: {reason['to_new']:.3f} of its held-out images answered with a new class"
    assert said in page
    history = cli(server, capsys, "history", name)
    assert "version 2 held:" in history and said in history
    assert "held versions: 2" in history
    listing = cli(server, capsys, "versions", "list", name)
    assert "held" in listing.splitlines()[2] and "version 2 held:" in listing

    # the next task continues from the held version (its digits are not lost) and is gated against v1
    relax = ["--gate-max-drop", "1", "--gate-max-task-drop", "1", "--gate-max-to-new", "1"]
    out = cli(server, capsys, "learners", "update", name, *relax)
    assert "max drop 1.0, max task drop 1.0, max to new 1.0" in out
    third = train(client, name, [4, 5])["result"]["gate"]
    assert third["decision"] == "activated" and third["reasons"] == [] and third["max_to_new"] == 1.0
    v = versions(client, name)
    assert v[3]["trained_from"] == 2 and v[3]["classes"] == ["0", "1", "2", "3", "4", "5"]
    assert v[3]["active"] and predict_version(client, name) == 3

    # an admin may still activate the held version: it serves and is published, its reasons stay
    r = client.post(f"/v1/learners/{name}/versions/2/activate", headers=auth())
    assert r.status_code == 200 and r.json()["active"] and r.json()["status"] == "published"
    assert r.json()["hold_reasons"] == gate["reasons"] and predict_version(client, name) == 2
    assert client.get(f"/v1/learners/{name}", headers=auth()).json()["held_versions"] == []
    metrics = client.get("/metrics", headers=auth()).text
    assert f'dgm_versions_held_total{{by="gate",learner="{name}"}} 1.0' in metrics  # a counter: stays


def test_gate_policy_always_activates_despite_reasons_and_reports_them(client: TestClient, make_learner):
    name = make_learner(**(STRICT | {"auto_activate": "always"}))
    train(client, name, [0, 1])
    gate = train(client, name, [2, 3])["result"]["gate"]
    assert gate["decision"] == "activated" and any(r.get("task") == 1 for r in gate["reasons"])
    assert "policy always" in gate["note"]
    v = versions(client, name)
    assert v[2]["active"] and v[2]["status"] == "published" and v[2]["hold_reasons"] is None
    assert predict_version(client, name) == 2


def test_gate_policy_never_waits_for_an_admin_and_an_activation_passes_over_held_work(
    client: TestClient, make_learner
):
    name = make_learner(**(STRICT | {"auto_activate": "never"}))
    first = train(client, name, [0, 1])["result"]["gate"]
    assert first["decision"] == "not_activated" and "waits for an admin" in first["note"]
    r = client.post(f"/v1/learners/{name}/predict", json={"images": [[[0] * 8] * 8]}, headers=auth())
    assert r.status_code == 409 and "no model version yet" in r.json()["detail"]  # nothing serves
    train(client, name, [2, 3])
    v = versions(client, name)
    assert [v[n]["status"] for n in (1, 2)] == ["held", "held"]
    assert v[2]["trained_from"] == 1 and v[2]["hold_reasons"][-1] == {"policy": "never"}

    # an admin chooses version 1: the next task trains from it, not from the held version 2
    assert client.post(f"/v1/learners/{name}/versions/1/activate", headers=auth()).status_code == 200
    train(client, name, [4, 5])
    v = versions(client, name)
    assert v[3]["trained_from"] == 1 and v[3]["classes"] == ["0", "1", "4", "5"] and v[3]["status"] == "held"
    assert predict_version(client, name) == 1
    learner = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert learner["held_versions"] == [2, 3]
    metrics = client.get("/metrics", headers=auth()).text
    assert f'dgm_versions_held_total{{by="policy",learner="{name}"}} 3.0' in metrics


def test_gate_without_holdouts_checks_fidelity_only_and_says_so(client: TestClient, make_learner):
    name = make_learner(**STRICT)
    train(client, name, [0, 1], holdout=0)
    gate = train(client, name, [2, 3], holdout=0)["result"]["gate"]
    assert gate["decision"] == "activated" and gate["gated"] and gate["reasons"] == []
    assert "tasks [1] have no holdout" in gate["note"] and "memory fidelity only" in gate["note"]
    assert "task 2 was uploaded without a holdout" in gate["note"]
    assert versions(client, name)[2]["active"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"auto_activate": "sometimes"}, "auto_activate"),
        ({"gate_max_drop": 1.5}, "gate_max_drop"),
        ({"gate_min_fidelity": -0.1}, "gate_min_fidelity"),
        ({"gate_max_drop": "much"}, "gate_max_drop"),
        ({"gate_max_to_new": 2}, "gate_max_to_new"),
        ({"gate_max_task_drop": -1}, "gate_max_task_drop"),
    ],
)
def test_gate_settings_out_of_range_are_422_and_change_nothing(
    client: TestClient, make_learner, pg_settings: Settings, body: dict, words: str
):
    from tests.service.support import TINY

    name = make_learner()
    before = snapshot(pg_settings)
    r = client.post("/v1/learners", json={**TINY, "name": "gate-bad", **body}, headers=auth())
    assert r.status_code == 422 and words in r.text, r.text
    r = client.patch(f"/v1/learners/{name}", json=body, headers=auth())
    assert r.status_code == 422 and words in r.text, r.text
    assert snapshot(pg_settings) == before
    shown = client.get(f"/v1/learners/{name}", headers=auth()).json()
    keys = ("auto_activate", "gate_max_drop", "gate_min_fidelity", "gate_max_to_new", "gate_max_task_drop")
    assert [shown[k] for k in keys] == TINY_GATE


def test_gate_settings_update_refuses_empty_null_unknown_and_non_admins(client: TestClient, make_learner):
    name = make_learner()
    r = client.patch(f"/v1/learners/{name}", json={}, headers=auth())
    assert r.status_code == 422 and "nothing to change" in r.json()["detail"]
    r = client.patch(f"/v1/learners/{name}", json={"gate_max_drop": None}, headers=auth())
    assert r.status_code == 422 and "cannot be null" in r.json()["detail"]
    r = client.patch(f"/v1/learners/{name}", json={"epochs": 3}, headers=auth())
    assert r.status_code == 422 and "epochs" in r.text
    r = client.patch("/v1/learners/no-such", json={"gate_max_drop": 0.1}, headers=auth())
    assert r.status_code == 404
    key = client.post("/v1/keys", json={"name": "gate-train", "scopes": ["train"]}, headers=auth()).json()
    r = client.patch(f"/v1/learners/{name}", json={"auto_activate": "always"}, headers=auth(key["key"]))
    assert r.status_code == 403
    change = {"auto_activate": "gate", "gate_max_drop": 0.1}
    r = client.patch(f"/v1/learners/{name}", json=change, headers=auth())
    assert r.status_code == 200 and (r.json()["auto_activate"], r.json()["gate_max_drop"]) == ("gate", 0.1)

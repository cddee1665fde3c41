"""`dgm forget`, `dgm purge` and `dgm learners delete` as subprocesses against a live server (issue 11)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.e2e.test_cli import dgm, ok, server, task_file  # noqa: F401 - the live server fixture
from tests.service.conftest import pg_settings, pg_worker  # noqa: F401 - the same PostgreSQL + worker stack

REFUSED = 3  # the API answered 4xx


def test_cli_forget_purge_and_delete(server: str, tmp_path: Path):  # noqa: F811
    name = f"cli-f-{uuid.uuid4().hex[:6]}"
    ok(dgm(server, "learners", "create", name, "--shape", "1,8,8", "--preset", "tiny", "--set", "epochs=1"))
    ok(dgm(server, "upload", name, str(task_file(tmp_path, "t1.npz", [0, 1])), "--holdout", "0.25", "--wait"))

    out = ok(dgm(server, "forget", name, "1", "--wait"))
    assert "forget '1'" in out and "removed '1' (learned by task #1): 1 generator head(s)" in out
    assert "job" in out and "succeeded" in out
    shown = json.loads(ok(dgm(server, "learners", "show", name, "--json")))
    assert shown["classes"] == ["0"] and shown["active_version"] == 2
    unknown = dgm(server, "forget", name, "7")
    assert unknown.returncode == REFUSED and "has no class '7'" in unknown.stderr
    last = dgm(server, "forget", name, "0")
    assert last.returncode == REFUSED and "only class" in last.stderr

    assert "purged versions holding '1': 1" in ok(dgm(server, "purge", name, "1"))
    assert json.loads(ok(dgm(server, "purge", name, "1", "--json")))["already_purged"] == [1]
    history = ok(dgm(server, "history", name))
    assert "forget 1" in history and "     1p " in history and "     2* " in history  # p: purged
    assert "forget 1" in ok(dgm(server, "tasks", name))
    active = dgm(server, "purge", name, "0")
    assert active.returncode == REFUSED and "active version" in active.stderr

    out = ok(dgm(server, "learners", "delete", name))
    assert f"learner {name} deleted" in out and "2 model_versions" in out
    gone = dgm(server, "learners", "show", name)
    assert gone.returncode == REFUSED and f"no learner named '{name}'" in gone.stderr

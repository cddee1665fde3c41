"""The artifact store fails: disk full while a version is saved, a folder that is a file, a file altered.

The job runs in this process (`run_job`, the code the Celery task calls), so a failure can be injected
at the exact write; the API, PostgreSQL and the broker are real.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from core.storage import ArtifactStore
from tests.service.support import Broker, auth, upload
from tests.worker.faults_support import (
    IN_PROCESS,
    Stack,
    job_row,
    make_learner,
    predict,
    record,
    versions_consistent,
    versions_of_task,
)
from worker.train import run_job


def trained(stack: Stack) -> str:
    """A learner with version 1 (digits 0 and 1)."""
    settings, client = stack
    name = make_learner(client)
    assert run_job(settings, Broker(), upload(client, name, [0, 1])) == "succeeded"
    return name


def retry(stack: Stack, job_id: int) -> str:
    settings, client = stack
    r = client.post(f"/v1/jobs/{job_id}/retry", headers=auth())
    assert r.status_code == 200, r.text
    return run_job(settings, Broker(), job_id)


def disk_full_on(kind: str) -> Callable:
    """`ArtifactStore.write_with` that runs out of space half way through the `kind` file."""
    real = ArtifactStore.write_with

    def write_with(self: ArtifactStore, uri: str, write: Callable[[Path], None]) -> tuple[int, str]:
        if not uri.endswith(f"/{kind}.safetensors"):
            return real(self, uri, write)

        def half_then_full(tmp: Path) -> None:
            write(tmp)
            with open(tmp, "r+b") as f:
                f.truncate(f.seek(0, os.SEEK_END) // 2)  # what reached the disk before it filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

        return real(self, uri, half_then_full)

    return write_with


@pytest.mark.parametrize("kind", ["checkpoint", "classifier"])
def test_fault_disk_full_while_saving_a_version(stack: Stack, monkeypatch: pytest.MonkeyPatch, kind: str):
    settings, client = stack
    name = trained(stack)
    job_id = upload(client, name, [2, 3])
    store = ArtifactStore(settings.artifacts)
    before = store.files()
    monkeypatch.setattr(ArtifactStore, "write_with", disk_full_on(kind))
    assert run_job(settings, Broker(), job_id) == "failed"
    monkeypatch.undo()

    job = job_row(settings, job_id)
    assert job.state == "failed" and job.task.state == "failed"
    assert job.error.startswith("ArtifactWriteFailed: could not write the new version's " + kind)
    assert "No space left on device" in job.error and "DGM_ARTIFACT_DIR" in job.error
    after = store.files()
    assert after == before  # no half-written file, no .tmp, no finished checkpoint of the attempt
    assert [v.number for v in versions_consistent(settings, name)] == [1]
    assert predict(client, name).json()["version"] == 1  # the old version keeps serving

    assert retry(stack, job_id) == "succeeded"  # space again: the same job trains and publishes
    assert [v.number for v in versions_consistent(settings, name)] == [1, 2]
    record(
        f"disk_full_writing_{kind}",
        {
            "injected": f"OSError(ENOSPC) half way through the {kind} file (in-process run_job)",
            "job_state": job.state,
            "error": job.error,
            "files_left_behind": sorted(set(after) - set(before)),
            "version_serving_after_failure": 1,
            "retry": "succeeded",
        },
        settings,
        IN_PROCESS,
    )


def test_fault_versions_folder_is_a_file(stack: Stack):
    """A real OS error, nothing injected: the learner's versions folder is a file, so nothing can be saved."""
    settings, client = stack
    name = make_learner(client)
    learner_id = client.get(f"/v1/learners/{name}", headers=auth()).json()["id"]
    job_id = upload(client, name, [0, 1])
    store = ArtifactStore(settings.artifacts)
    blocker = store.path(f"learners/{learner_id}/versions")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"")
    before = store.files()

    assert run_job(settings, Broker(), job_id) == "failed"
    job = job_row(settings, job_id)
    assert job.error.startswith("ArtifactWriteFailed: could not write the new version's checkpoint")
    assert "File exists" in job.error or "Not a directory" in job.error  # the OS's own words
    after = store.files()
    assert after == before
    r = predict(client, name)
    assert r.status_code == 409 and r.json()["error"] == "NotReady"  # nothing was published

    blocker.unlink()
    assert retry(stack, job_id) == "succeeded"
    assert [v.number for v in versions_consistent(settings, name)] == [1]
    record(
        "versions_folder_is_a_file",
        {
            "job_state": job.state,
            "error": job.error,
            "files_left_behind": sorted(set(after) - set(before)),
            "retry": "succeeded",
        },
        settings,
        IN_PROCESS,
    )


def flip_byte(path: Path) -> bytes:
    """Change one byte in the middle of the file (same size, different sha256); return the original."""
    data = path.read_bytes()
    i = len(data) // 2
    path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    return data


def test_fault_altered_checkpoint_refused_reported_and_not_trained_from(
    stack: Stack, caplog: pytest.LogCaptureFixture
):
    settings, client = stack
    damaged, healthy = trained(stack), trained(stack)
    (v1,) = versions_consistent(settings, damaged)
    store = ArtifactStore(settings.artifacts)
    classifier, checkpoint = store.path(v1.classifier_uri), store.path(v1.checkpoint_uri)
    originals = {classifier: flip_byte(classifier), checkpoint: flip_byte(checkpoint)}

    caplog.set_level(logging.ERROR, logger="service.classifiers")
    for _ in range(2):  # refused every time: a damaged file is never cached
        r = predict(client, damaged)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "ArtifactCorrupt"
        assert "sha256" in r.json()["detail"] and "does not match" in r.json()["detail"]
        assert "version 1" in r.json()["detail"]
    assert predict(client, healthy).status_code == 200  # the API keeps answering
    assert client.get("/healthz").status_code == 200
    reported = [r for r in caplog.records if r.name == "service.classifiers" and "sha256" in r.message]
    assert len(reported) == 2 and all(rec.levelno == logging.ERROR for rec in reported)
    assert client.app.state.classifiers.load_failures >= 2

    job_id = upload(client, damaged, [2, 3])
    assert run_job(settings, Broker(), job_id) == "failed"
    job = job_row(settings, job_id)
    assert job.error.startswith("ArtifactCorrupt: cannot train from version 1: artifact " + v1.checkpoint_uri)
    assert "sha256" in job.error and "retry this job" in job.error
    assert versions_of_task(settings, job_id) == 0

    for path, data in originals.items():
        path.write_bytes(data)
    assert predict(client, damaged).json()["version"] == 1  # restored: serves again at once
    assert retry(stack, job_id) == "succeeded"
    assert [v.number for v in versions_consistent(settings, damaged)] == [1, 2]
    record(
        "altered_checkpoint",
        {
            "predict_status": r.status_code,
            "predict_error": r.json()["error"],
            "predict_detail": r.json()["detail"],
            "other_learner_status": 200,
            "errors_logged": len(reported),
            "training_job_error": job.error,
            "after_restore": "predict 200, retry succeeded",
        },
        settings,
        IN_PROCESS,
    )


@pytest.mark.parametrize("committed", [False, True], ids=["before-commit", "after-commit"])
def test_fault_database_lost_while_publishing(stack: Stack, monkeypatch: pytest.MonkeyPatch, committed: bool):
    """The connection dies at COMMIT: files of a version that did not go in are removed, files of one
    that did go in are kept (the worker asks the database which it was)."""
    from sqlalchemy.exc import OperationalError

    import worker.train

    settings, client = stack
    name = trained(stack)
    job_id = upload(client, name, [2, 3])
    before = ArtifactStore(settings.artifacts).files()
    real = worker.train.publish

    def publish(*args, **kwargs) -> int:
        if committed:
            real(*args, **kwargs)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(worker.train, "publish", publish)
    outcome = run_job(settings, Broker(), job_id)
    monkeypatch.undo()

    job = job_row(settings, job_id)
    versions = [v.number for v in versions_consistent(settings, name)]  # no file without its row
    if committed:  # the version is in: it serves, and the job's own record says so
        assert versions == [1, 2] and job.state == "succeeded"
        assert predict(client, name).json()["version"] == 2
    else:
        assert outcome == "failed" and job.state == "failed" and "OperationalError" in job.error
        assert versions == [1] and predict(client, name).json()["version"] == 1
        assert ArtifactStore(settings.artifacts).files() == before
        assert retry(stack, job_id) == "succeeded"
    record(
        f"database_lost_while_publishing_{'after' if committed else 'before'}_commit",
        {
            "injected": "OperationalError from publish, " + ("after" if committed else "before") + " COMMIT",
            "job_state": job.state,
            "versions": versions,
            "files_kept": committed,
        },
        settings,
        IN_PROCESS,
    )

"""The training job in-process on SQLite: order per learner, leases, duplicates, cancel, failure, sweeper."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.db import session_scope
from core.lifecycle import claim
from core.orm import Job, ModelVersion, Task, utcnow
from core.settings import Settings
from core.sweeper import sweep
from tests.service.support import TINY, Broker, auth, upload
from worker.train import run_job


def learner(client: TestClient, name: str = "w") -> str:
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    return name


def job_row(settings: Settings, job_id: int) -> Job:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        job.task  # noqa: B018 - load it before the session closes
        return job


def test_worker_second_task_waits_then_trains_from_the_first(client: TestClient, settings: Settings):
    name = learner(client)
    j1, j2 = upload(client, name, [0, 1]), upload(client, name, [2, 3])
    broker = Broker()
    assert run_job(settings, broker, j2).startswith("waiting")
    assert broker.sent == [(j2, 7)]  # re-queued with the countdown, not trained
    assert job_row(settings, j2).state == "queued"
    assert run_job(settings, broker, j1) == "succeeded"
    assert broker.sent[-1] == (j2, None)  # the finished job starts the next one at once
    assert run_job(settings, broker, j2) == "succeeded"
    with session_scope(settings) as s:
        v1, v2 = s.scalars(select(ModelVersion).order_by(ModelVersion.number)).all()
        assert v2.parent_id == v1.id and v2.active and not v1.active
        assert v2.classes == ["0", "1", "2", "3"]
        assert s.scalar(select(Task.data_uri).where(Task.id == v2.task_id)) is None  # training data deleted


def test_worker_duplicate_delivery_does_not_train_twice(client: TestClient, settings: Settings):
    name = learner(client)
    j1 = upload(client, name, [0, 1])
    broker = Broker()
    assert run_job(settings, broker, j1) == "succeeded"
    assert run_job(settings, broker, j1).startswith("nothing to do")
    with session_scope(settings) as s:
        assert s.scalar(select(ModelVersion.id).where(ModelVersion.number == 2)) is None
        assert s.get(Job, j1).attempts == 1


def test_worker_lease_blocks_a_second_claim_until_it_expires(client: TestClient, settings: Settings):
    name = learner(client)
    j1 = upload(client, name, [0, 1])
    token = claim(settings, j1)
    assert token and token != "wait"
    assert claim(settings, j1) is None  # another worker: the lease is held
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == j1).values(lease_until=utcnow() - timedelta(seconds=1)))
    second = claim(settings, j1)  # the first worker died: the lease ran out
    assert second not in (None, "wait", token)
    assert job_row(settings, j1).attempts == 2


def test_worker_cancel_requested_stops_training(client: TestClient, settings: Settings):
    name = learner(client)
    j1 = upload(client, name, [0, 1])
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == j1).values(cancel_requested=True))
    assert run_job(settings, Broker(), j1) == "cancelled"
    job = job_row(settings, j1)
    assert job.state == "cancelled" and job.task.state == "cancelled"
    with session_scope(settings) as s:
        assert s.scalar(select(ModelVersion.id)) is None


def test_worker_failure_is_recorded_and_retry_succeeds(client: TestClient, settings: Settings):
    from core.storage import ArtifactStore

    name = learner(client)
    j1 = upload(client, name, [0, 1])
    store = ArtifactStore(settings.artifacts)
    with session_scope(settings) as s:
        uri = s.get(Job, j1).task.data_uri
    data = store.path(uri).read_bytes()
    store.path(uri).write_bytes(b"damaged")
    assert run_job(settings, Broker(), j1) == "failed"
    job = job_row(settings, j1)
    assert job.state == "failed" and job.error and job.task.state == "failed"
    assert client.get(f"/v1/jobs/{j1}", headers=auth()).json()["error"] == job.error

    store.path(uri).write_bytes(data)
    r = client.post(f"/v1/jobs/{j1}/retry", headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "queued" and r.json()["error"] is None
    assert run_job(settings, Broker(), j1) == "succeeded"
    assert client.post(f"/v1/jobs/{j1}/retry", headers=auth()).status_code == 409


def test_sweeper_reenqueues_lost_jobs_only(client: TestClient, settings: Settings):
    name = learner(client)
    j1, j2 = upload(client, name, [0, 1]), upload(client, name, [2, 3])
    broker = Broker()
    assert sweep(settings, broker) == []  # both were just enqueued
    old = utcnow() - timedelta(seconds=600)
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == j1).values(enqueued_at=old))
    assert sweep(settings, broker) == [j1] and broker.sent == [(j1, None)]
    assert sweep(settings, broker) == []  # touched, so not sent again
    token = claim(settings, j1)
    with session_scope(settings) as s:  # its worker died mid-training
        s.execute(update(Job).where(Job.id == j1).values(lease_until=old))
    assert sweep(settings, broker) == [j1]
    assert token and run_job(settings, broker, j1) == "succeeded"
    assert job_row(settings, j2).state == "queued"

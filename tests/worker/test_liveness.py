"""Worker heartbeats, the state detail of a waiting job, lease renewal while a job trains, backoff.

In-process on SQLite: a Heartbeat thread stands for a worker (the same class the Celery worker starts on
`worker_ready`); /readyz, /metrics and GET /v1/jobs/{id} are read through the API.
"""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.db import session_scope
from core.lifecycle import claim
from core.liveness import Heartbeat
from core.orm import Job, WorkerHeartbeat, utcnow
from core.settings import Settings
from tests.service.support import TINY, Broker, auth, upload
from worker.progress import JobReporter
from worker.train import run_job


def learner(client: TestClient, name: str = "live") -> str:
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    return name


def detail(client: TestClient, job_id: int) -> str:
    return client.get(f"/v1/jobs/{job_id}", headers=auth()).json()["state_detail"]


def metric(client: TestClient, name: str) -> float:
    body = client.get("/metrics", headers=auth()).text
    return float(next(ln.split()[-1] for ln in body.splitlines() if ln.startswith(name + " ")))


def test_liveness_heartbeat_counts_in_readyz_and_metrics_and_goes_on_clean_stop(
    client: TestClient, settings: Settings
):
    before = client.get("/readyz").json()
    assert before["ready"] is True and before["workers_alive"] == 0  # not ready-gated on workers
    assert before["training"].startswith("no live worker has ever reported")
    assert metric(client, "dgm_workers_alive") == 0

    beat = Heartbeat(settings, {"queue": settings.queue}, name="host:1").start()
    other_queue = Heartbeat(settings, {"queue": "elsewhere"}, name="host:2").start()
    try:
        time.sleep(0.3)
        now = client.get("/readyz").json()
        assert now["workers_alive"] == 1 and now["training"] == "ok"  # the other queue's worker can't help
        assert metric(client, "dgm_workers_alive") == 1
    finally:
        beat.stop()
        other_queue.stop()
    with session_scope(settings) as s:  # a clean stop marks the row, which keeps the time it was last seen
        assert all(info["stopped"] for info in s.scalars(select(WorkerHeartbeat.info)))
    after = client.get("/readyz").json()
    assert after["workers_alive"] == 0 and after["training"].startswith("no live worker since ")


def test_liveness_killed_worker_ages_out_of_the_window(client: TestClient, settings: Settings):
    beat = Heartbeat(settings, {"queue": settings.queue}, name="host:3").start()
    beat._stop.set()  # the thread ends without deleting its row, as after SIGKILL
    beat._thread.join()
    assert client.get("/readyz").json()["workers_alive"] == 1
    stale = utcnow() - timedelta(seconds=settings.worker_alive_s + 1)
    with session_scope(settings) as s:
        s.execute(update(WorkerHeartbeat).values(last_seen=stale))
    body = client.get("/readyz").json()
    assert body["workers_alive"] == 0 and stale.isoformat(timespec="seconds") in body["training"]


def test_liveness_queued_job_says_why_it_waits(client: TestClient, settings: Settings):
    name = learner(client)
    j1, j2 = upload(client, name, [0, 1]), upload(client, name, [2, 3])
    assert detail(client, j1) == "waiting: no live worker has ever reported"

    beat = Heartbeat(settings, {"queue": settings.queue}, name="host:4").start()
    try:
        time.sleep(0.3)
        assert detail(client, j1).startswith("waiting for a free worker (1 alive")
        assert detail(client, j2) == f"waiting for task #1 of the learner (job {j1}, queued)"
        assert claim(settings, j1) is not None
        running = client.get(f"/v1/jobs/{j1}", headers=auth()).json()
        assert running["state"] == "running" and running["state_detail"].startswith("running on ")
    finally:
        beat.stop()
    assert detail(client, j2).startswith("waiting: no live worker since ")


def test_liveness_waiting_job_backs_off_doubling_up_to_a_cap(client: TestClient, settings: Settings):
    name = learner(client)
    upload(client, name, [0, 1])
    j2 = upload(client, name, [2, 3])
    broker = Broker()
    cap = min(settings.requeue_max_s, settings.stuck_after_s / 2)  # 30 s with stuck_after_s 60
    for waited, expected in ((0, settings.requeue_countdown_s), (20, 20), (400, cap)):
        with session_scope(settings) as s:
            s.execute(update(Job).where(Job.id == j2).values(created_at=utcnow() - timedelta(seconds=waited)))
        assert run_job(settings, broker, j2).startswith("waiting")
        job_id, countdown = broker.sent[-1]
        assert job_id == j2 and abs(countdown - expected) < 1, (waited, countdown)


def test_liveness_lease_renewed_while_the_job_reports_nothing(client: TestClient, settings: Settings):
    name = learner(client)
    job_id = upload(client, name, [0, 1])
    quick = settings.model_copy(update={"lease_s": 6})  # renewed every 2 s
    token = claim(quick, job_id)
    assert token is not None
    with session_scope(settings) as s:
        first = s.scalar(select(Job.lease_until).where(Job.id == job_id))
    reporter = JobReporter(quick, job_id, token)
    with reporter.renewing():
        time.sleep(2.6)  # a phase with no progress write: loading, evaluation, one long step
    with session_scope(settings) as s:
        renewed = s.scalar(select(Job.lease_until).where(Job.id == job_id))
    assert renewed > first + timedelta(seconds=1.5) and not reporter.lease_lost

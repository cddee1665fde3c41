"""Workers killed mid-training, two workers racing for one learner, duplicate deliveries.

Real worker processes on a private redis-server and a fresh PostgreSQL schema. How a killed job comes
back depends on what died:
- the whole worker (solo pool): its message stays unacknowledged in Redis until the visibility timeout
  (hours, above the longest training), so the sweeper brings the job back once its lease runs out;
- a prefork pool child: Celery requeues its message at once (acks_late + reject_on_worker_lost); the
  next delivery sees the dead child's lease still running and looks again when it has run out.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from fastapi.testclient import TestClient

from core.orm import utcnow
from core.queue import enqueue_train
from core.sweeper import sweep
from tests.service.support import auth, digits, npz_bytes, upload, wait_job
from tests.worker.faults_support import (
    WORKER_PROCESSES,
    RedisServer,
    job_row,
    make_learner,
    pid_of,
    pool_children,
    predict,
    record,
    sigkill,
    task_ordinal,
    versions_consistent,
    versions_of_task,
    wait_training,
    wait_until,
    workers,
)

LONG = 80  # epochs: a few seconds of training, long enough to kill in the middle


def first_version(client: TestClient, name: str) -> None:
    assert wait_job(client, upload(client, name, [0, 1]))["state"] == "succeeded"
    assert predict(client, name).json()["version"] == 1


def test_fault_worker_killed_mid_training_sweeper_redelivers(stack, broker: RedisServer):
    settings, client = stack
    with workers(settings, "solo-a", "solo-b") as procs:
        name = make_learner(client, epochs=LONG)
        first_version(client, name)
        job_id = upload(client, name, [2, 3])
        job = wait_training(settings, job_id)
        victim = next(p for p in procs if p.pid == pid_of(job))  # with solo, the worker itself
        survivor = next(p for p in procs if p is not victim)
        killed_at = time.monotonic()
        sigkill(victim.pid)
        assert victim.wait(timeout=10) == -9 and survivor.poll() is None

        during = predict(client, name)  # the outage: the previous version keeps serving
        assert during.status_code == 200 and during.json()["version"] == 1
        assert len(broker.unacked()) == 1  # Redis holds the dead worker's delivery...
        assert job_row(settings, job_id).attempts == 1  # ...and does not hand it out again
        if job_row(settings, job_id).lease_until > utcnow() + timedelta(seconds=1):
            assert sweep(settings, client.app.state.celery) == []  # the lease still runs: not lost yet

        wait_until(lambda: job_row(settings, job_id).lease_until < utcnow(), 30, "the lease to run out")
        assert sweep(settings, client.app.state.celery) == [job_id]
        swept_at = time.monotonic()
        wait_until(lambda: job_row(settings, job_id).attempts == 2, 60, "the second worker's claim")
        claimed_at = time.monotonic()
        done = wait_job(client, job_id)
        done_at = time.monotonic()

    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert pid_of(job_row(settings, job_id)) == survivor.pid
    assert predict(client, name).json()["version"] == 2
    assert [v.number for v in versions_consistent(settings, name)] == [1, 2]
    assert versions_of_task(settings, job_id) == 1
    record(
        "worker_sigkill_solo",
        {
            "mechanism": "sweeper: lease expiry + sweep(); the Redis delivery stayed unacked (visibility "
            f"timeout {settings.visibility_timeout_s} s)",
            "lease_s": settings.lease_s,
            "kill_to_sweep_s": round(swept_at - killed_at, 2),
            "kill_to_redelivery_s": round(claimed_at - killed_at, 2),
            "kill_to_completion_s": round(done_at - killed_at, 2),
            "attempts": done["attempts"],
            "version_during_outage": during.json()["version"],
            "versions": 2,
        },
        settings,
        WORKER_PROCESSES,
    )


def test_fault_pool_child_killed_mid_training_celery_requeues(stack):
    settings, client = stack
    with workers(settings, "prefork", pool="prefork") as (parent,):
        name = make_learner(client, epochs=LONG)
        first_version(client, name)
        job_id = upload(client, name, [2, 3])
        job = wait_training(settings, job_id)
        child = pid_of(job)
        assert child in pool_children(parent.pid) and child != parent.pid
        killed_at = time.monotonic()
        sigkill(child)
        assert parent.poll() is None  # only the pool child died

        during = predict(client, name)
        assert during.status_code == 200 and during.json()["version"] == 1
        # No sweep(): Celery requeues the message, and the new child waits out the dead child's lease.
        wait_until(lambda: job_row(settings, job_id).attempts == 2, 60, "the requeued job's claim")
        claimed_at = time.monotonic()
        done = wait_job(client, job_id)
        done_at = time.monotonic()
        log = (settings.data_dir / "prefork.log").read_text(errors="replace")

    assert "WorkerLostError" in log  # Celery saw the child die and requeued its message
    waited_lease = "leased by another worker" in log
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert pid_of(job_row(settings, job_id)) not in (child, parent.pid)
    assert [v.number for v in versions_consistent(settings, name)] == [1, 2]
    assert versions_of_task(settings, job_id) == 1
    record(
        "worker_sigkill_prefork_child",
        {
            "mechanism": "Celery acks_late + reject_on_worker_lost requeued the message at once; the next "
            "delivery saw the dead child's lease and re-enqueued itself for when it runs out",
            "lease_s": settings.lease_s,
            "redelivery_waited_for_the_lease": waited_lease,
            "kill_to_redelivery_s": round(claimed_at - killed_at, 2),
            "kill_to_completion_s": round(done_at - killed_at, 2),
            "attempts": done["attempts"],
            "version_during_outage": during.json()["version"],
            "versions": 2,
        },
        settings,
        WORKER_PROCESSES,
    )


def test_fault_two_workers_simultaneous_uploads_train_in_order(stack, broker: RedisServer):
    settings, client = stack
    name = make_learner(client)
    files = [npz_bytes(x=x, y=y) for x, y in (digits([0, 1]), digits([2, 3]))]
    replies: list = [None, None]
    start = threading.Barrier(2)

    def post(i: int) -> None:
        start.wait()
        replies[i] = client.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", files[i])}, headers=auth()
        )

    stale = broker.unacked()  # deliveries of workers killed in earlier tests
    with workers(settings, "race-a", "race-b"):
        threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
        jobs = sorted((r.json()["job"]["id"] for r in replies), key=lambda j: task_ordinal(settings, j))
        finished = [wait_job(client, j) for j in jobs]

        # A duplicate delivery of each finished job, and of a third job while it may be running.
        third = upload(client, name, [4, 5])
        for job_id in (*jobs, third, third):
            enqueue_train(client.app.state.celery, settings, job_id)
        last = wait_job(client, third)
        wait_until(lambda: broker.idle(settings.queue, stale), 60, "every duplicate to be handled")

    rows = [job_row(settings, j) for j in (*jobs, third)]
    assert [f["state"] for f in finished] == ["succeeded", "succeeded"] and last["state"] == "succeeded"
    assert [task_ordinal(settings, j) for j in (*jobs, third)] == [1, 2, 3]
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier.finished_at <= later.started_at  # one task of the learner at a time
    assert [r.attempts for r in rows] == [1, 1, 1]  # duplicates did not train again
    versions = versions_consistent(settings, name)
    assert [(v.number, v.task_id) for v in versions] == [(i + 1, r.task_id) for i, r in enumerate(rows)]
    record(
        "two_workers_order_and_duplicates",
        {
            "workers": 2,
            "simultaneous_uploads": 2,
            "ordinals": [1, 2, 3],
            "version_numbers": [v.number for v in versions],
            "trained_by": sorted({r.worker.split(":")[1] for r in rows}),
            "gaps_between_jobs_s": [
                round((b.started_at - a.finished_at).total_seconds(), 3)
                for a, b in zip(rows, rows[1:], strict=False)
            ],
            "duplicate_messages_sent": 4,
            "attempts": [r.attempts for r in rows],
        },
        settings,
        WORKER_PROCESSES,
    )

"""The broker restarted and the database's connections dropped while a worker trains.

A private redis-server (never the shared 6379) that the test restarts with SHUTDOWN NOSAVE, so every
message in it is lost; PostgreSQL backends of the worker, found by the application_name it connects
with, terminated with pg_terminate_backend.
"""

from __future__ import annotations

import signal
import time
import uuid

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.service.support import PG_SERVER, auth, upload, wait_job
from tests.worker.faults_support import (
    WORKER_PROCESSES,
    RedisServer,
    Stack,
    job_row,
    make_learner,
    predict,
    record,
    versions_consistent,
    versions_of_task,
    wait_training,
    workers,
)

LONG = 120  # epochs: several seconds of training, so the job is still running while connections drop
DOWN_S = 1.5  # how long Redis stays down


def finish_or_retry(client: TestClient, job_id: int) -> tuple[dict, dict | None]:
    """The job's end; a failed job must be retryable, and its retry must succeed."""
    end = wait_job(client, job_id)
    if end["state"] != "failed":
        return end, None
    r = client.post(f"/v1/jobs/{job_id}/retry", headers=auth())
    assert r.status_code == 200, r.text
    return end, wait_job(client, job_id)


def test_fault_redis_restarted_mid_job(stack: Stack, broker: RedisServer):
    settings, client = stack
    with workers(settings, "redis-restart") as (worker,):
        name = make_learner(client, epochs=LONG)
        j1, j2 = upload(client, name, [0, 1]), upload(client, name, [2, 3])
        wait_training(settings, j1)
        waiting = broker.client().llen(settings.queue)  # j2's message: the busy worker has not taken it
        started = time.monotonic()
        # The worker is paused while Redis is away, so j1 is surely mid-training when Redis is back
        # however fast this machine trains; its connections to Redis die all the same.
        worker.send_signal(signal.SIGSTOP)
        broker.shutdown()  # SHUTDOWN NOSAVE
        time.sleep(DOWN_S)
        broker.start()  # the same port again
        worker.send_signal(signal.SIGCONT)
        restarted_s = time.monotonic() - started
        assert broker.client().llen(settings.queue) == 0  # every message in it is lost
        assert job_row(settings, j1).state == "running"  # training needs no broker
        first, first_retry = finish_or_retry(client, j1)
        # j2's message was lost: the worker re-sends it when j1 ends (lifecycle.start_next), on the new Redis
        second, second_retry = finish_or_retry(client, j2)
        done_s = time.monotonic() - started

    assert (first_retry or first)["state"] == "succeeded" and (second_retry or second)["state"] == "succeeded"
    assert [v.number for v in versions_consistent(settings, name)] == [1, 2]
    assert versions_of_task(settings, j1) == versions_of_task(settings, j2) == 1
    assert predict(client, name).json()["version"] == 2
    record(
        "redis_restart_mid_job",
        {
            "restart": f"SHUTDOWN NOSAVE, {DOWN_S} s down, start again on the same port; the worker "
            "paused (SIGSTOP) meanwhile so the job is mid-training when Redis returns",
            "broker_down_s": round(restarted_s, 2),
            "messages_lost_in_restart": waiting,
            "running_job": first["state"] + (" then retried: " + first_retry["state"] if first_retry else ""),
            "queued_job_whose_message_was_lost": second["state"]
            + (" then retried: " + second_retry["state"] if second_retry else ""),
            "requeued_by": "the worker's start_next (core/lifecycle.py) when the running job ended",
            "restart_to_both_done_s": round(done_s, 2),
            "attempts": [job_row(settings, j).attempts for j in (j1, j2)],
            "versions": 2,
        },
        settings,
        WORKER_PROCESSES,
    )


def terminate(application_name: str) -> int:
    """pg_terminate_backend on every connection the worker opened; how many there were."""
    engine = sa.create_engine(PG_SERVER, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        n = c.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"
            ),
            {"n": application_name},
        ).scalar_one()
    engine.dispose()
    return n


def test_fault_postgres_connections_dropped_mid_job(stack: Stack):
    settings, client = stack
    app_name = f"dgm-fault-{uuid.uuid4().hex[:8]}"  # tells the worker's backends from the API's and ours
    url = f"{settings.database_url}&application_name={app_name}"
    with workers(settings, "pg-drop", database_url=url) as (worker,):
        name = make_learner(client, epochs=LONG)
        assert wait_job(client, upload(client, name, [0, 1]))["state"] == "succeeded"
        job_id = upload(client, name, [2, 3])
        wait_training(settings, job_id)
        started = time.monotonic()
        # First drop with the worker paused, so it lands mid-job however fast this machine trains: the
        # worker holds a pooled connection from its progress writes, and finds it dead when it resumes.
        worker.send_signal(signal.SIGSTOP)
        dropped, rounds = terminate(app_name), 1
        worker.send_signal(signal.SIGCONT)
        while True:  # drop the worker's connections again and again while it trains
            job = job_row(settings, job_id)
            if job.state != "running" or (job.progress or {}).get("fraction", 0) > 0.8:
                break
            dropped += terminate(app_name)
            rounds += 1
            during = predict(client, name)
            assert during.status_code == 200 and during.json()["version"] == 1
            time.sleep(0.3)
        end, retried = finish_or_retry(client, job_id)
        done_s = time.monotonic() - started
        log = (settings.data_dir / "pg-drop.log").read_text(errors="replace")

    assert rounds >= 1 and dropped >= 1
    if end["state"] == "failed":  # a clean failure names the database error
        assert "OperationalError" in end["error"] or "connection" in end["error"]
    assert (retried or end)["state"] == "succeeded"
    assert [v.number for v in versions_consistent(settings, name)] == [1, 2]
    assert versions_of_task(settings, job_id) == 1
    record(
        "postgres_connections_dropped_mid_job",
        {
            "how": "pg_terminate_backend on the worker's backends (by application_name) every 0.3 s "
            "while it trained",
            "rounds": rounds,
            "backends_terminated": dropped,
            "outcome": end["state"] + (" then retried: " + retried["state"] if retried else ""),
            "error": end["error"],
            "progress_writes_retried": log.count("database connection lost during a progress write"),
            "recovered_by": "pool_pre_ping replaces dead pooled connections; a write cut mid-query is "
            "retried once on a fresh connection",
            "first_drop_to_done_s": round(done_s, 2),
            "attempts": job_row(settings, job_id).attempts,
            "versions": 2,
        },
        settings,
        WORKER_PROCESSES,
    )

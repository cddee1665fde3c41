"""The job lifecycle (core/lifecycle.py): every transition, legal and illegal, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core import lifecycle
from core.db import session_scope, upgrade
from core.errors import JobStateConflict
from core.lifecycle import JobState, LeaseLost, RequeuePolicy, TaskState
from core.orm import Job, Learner, Task, utcnow
from core.queue import make_celery
from core.settings import Settings
from tests.service.support import Broker, pg_schema


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    folder = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    if request.param == "sqlite":
        s = Settings(data_dir=folder, lease_s=30, stuck_after_s=60, requeue_countdown_s=2, requeue_max_s=20)
        upgrade(s.database_url)
        yield s
        return
    with pg_schema() as url:
        yield Settings(data_dir=folder, database_url=url, lease_s=30, stuck_after_s=60, requeue_countdown_s=2,
                       requeue_max_s=20)  # fmt: skip


def learner_with_tasks(settings: Settings, n: int = 1, data: bool = True) -> list[int]:
    """A new learner with `n` queued tasks, oldest first; returns their jobs' ids."""
    with session_scope(settings) as s:
        learner = Learner(name=f"lc-{uuid.uuid4().hex[:8]}", image_shape=[1, 8, 8], variant="dgmw",
                          preset="tiny", config={})  # fmt: skip
        s.add(learner)
        s.flush()
        jobs = []
        for ordinal in range(1, n + 1):
            task = Task(learner_id=learner.id, ordinal=ordinal, state=TaskState.QUEUED,
                        classes=[str(ordinal)], class_counts={str(ordinal): 4}, n_train=4, source="t.npz",
                        data_uri="data.npz" if data else None)  # fmt: skip
            s.add(task)
            s.flush()
            jobs.append(lifecycle.new_job(task))
            s.add(jobs[-1])
        s.flush()
        return [j.id for j in jobs]


def states(settings: Settings, job_id: int) -> tuple[str, str]:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        return job.state, job.task.state


def claimed(settings: Settings, n: int = 1) -> tuple[int, str]:
    job_id = learner_with_tasks(settings, n)[0]
    token = lifecycle.claim(settings, job_id)
    assert token not in (None, lifecycle.WAIT)
    return job_id, token


def test_lifecycle_states_are_the_stored_and_served_strings():
    assert [s.value for s in JobState] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert [s.value for s in TaskState] == ["queued", "training", "trained", "failed", "cancelled"]
    assert JobState.RUNNING == "running" and f"{JobState.FAILED}" == "failed"
    assert str(TaskState.TRAINED) == "trained"
    assert json.dumps({"state": JobState.QUEUED}) == '{"state": "queued"}'


def test_lifecycle_new_job_is_queued_and_stored_as_plain_strings(settings: Settings):
    (job_id,) = learner_with_tasks(settings)
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert (job.state, job.task.state, job.attempts) == ("queued", "queued", 0) and job.enqueued_at
    with session_scope(settings) as s:
        raw = s.execute(select(Job.state).where(Job.id == job_id)).scalar_one()
        assert type(raw) is str and raw == "queued"


def test_lifecycle_claim_takes_a_lease_once(settings: Settings):
    job_id, token = claimed(settings)
    assert states(settings, job_id) == ("running", "training")
    assert lifecycle.claim(settings, job_id) is None  # a second worker: the lease is held
    left = lifecycle.lease_left(settings, job_id)
    assert left is not None and 25 < left <= 30
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1)))
    again = lifecycle.claim(settings, job_id)  # the first worker died: its lease ran out
    assert again not in (None, lifecycle.WAIT, token)
    with session_scope(settings) as s:
        assert s.get(Job, job_id).attempts == 2


def test_lifecycle_claim_waits_for_an_earlier_task(settings: Settings):
    first, second = learner_with_tasks(settings, 2)
    assert lifecycle.claim(settings, second) == lifecycle.WAIT
    assert states(settings, second) == ("queued", "queued")
    assert lifecycle.claim(settings, first) not in (None, lifecycle.WAIT)
    assert lifecycle.claim(settings, second) == lifecycle.WAIT  # the first still trains


def test_lifecycle_claim_of_a_finished_or_unknown_job_does_nothing(settings: Settings):
    job_id, token = claimed(settings)
    assert lifecycle.fail(settings, job_id, token, "boom")
    assert lifecycle.claim(settings, job_id) is None and lifecycle.lease_left(settings, job_id) is None
    assert lifecycle.claim(settings, 10**9) is None


def test_lifecycle_renew_lease_stores_progress_and_reads_the_cancel_flag(settings: Settings):
    job_id, token = claimed(settings)
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() + timedelta(seconds=1)))
    assert lifecycle.renew_lease(settings, job_id, token, {"step": 3}) is False
    assert lifecycle.lease_left(settings, job_id) > 25
    with session_scope(settings) as s:
        assert s.get(Job, job_id).progress == {"step": 3}
        s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    assert lifecycle.renew_lease(settings, job_id, token) is True
    with session_scope(settings) as s:
        assert s.get(Job, job_id).progress == {"step": 3}  # None leaves the progress as it was
    assert lifecycle.renew_lease(settings, job_id, "not-the-token") is None  # lost


def test_lifecycle_succeed_under_the_lease_trains_the_task(settings: Settings):
    job_id, token = claimed(settings)
    with session_scope(settings) as s:
        lifecycle.succeed(s, job_id, token, {"data_uri": None}, warnings=["w"], result={"gate": {}})
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert (job.state, job.task.state, job.task.data_uri) == ("succeeded", "trained", None)
        assert job.warnings == ["w"] and job.result == {"gate": {}}
        assert job.finished_at and job.lease_until is None


def test_lifecycle_succeed_without_the_lease_raises_and_changes_nothing(settings: Settings):
    job_id, token = claimed(settings)
    with pytest.raises(LeaseLost), session_scope(settings) as s:
        lifecycle.succeed(s, job_id, "another-workers-token", warnings=[])
    assert states(settings, job_id) == ("running", "training")


def test_lifecycle_fail_and_stop_cancelled_end_a_running_job(settings: Settings):
    job_id, token = claimed(settings)
    assert lifecycle.fail(settings, job_id, token, "ValueError: bad")
    assert states(settings, job_id) == ("failed", "failed")
    other, token2 = claimed(settings)
    assert lifecycle.stop_cancelled(settings, other, token2)
    assert states(settings, other) == ("cancelled", "cancelled")
    with session_scope(settings) as s:
        assert s.get(Job, job_id).error == "ValueError: bad"
        assert s.get(Job, other).error == "cancelled on request"


def test_lifecycle_finishing_a_cancelled_or_failed_job_is_refused(settings: Settings):
    job_id, token = claimed(settings)
    assert lifecycle.stop_cancelled(settings, job_id, token)  # the API asked, the worker stopped
    assert not lifecycle.fail(settings, job_id, token, "late failure")
    with pytest.raises(LeaseLost), session_scope(settings) as s:
        lifecycle.succeed(s, job_id, token, warnings=[])
    assert states(settings, job_id) == ("cancelled", "cancelled")
    with session_scope(settings) as s:
        assert s.get(Job, job_id).error == "cancelled on request"


def test_lifecycle_cancel_a_queued_job_at_once_and_a_running_one_by_request(settings: Settings):
    queued, running = learner_with_tasks(settings)[0], claimed(settings)[0]
    with session_scope(settings) as s:
        lifecycle.cancel(s, s.get(Job, queued))
        lifecycle.cancel(s, s.get(Job, running))
    assert states(settings, queued) == ("cancelled", "cancelled")
    assert states(settings, running) == ("running", "training")
    with session_scope(settings) as s:
        assert s.get(Job, running).cancel_requested and s.get(Job, queued).finished_at


REFUSED = [  # (transition, a state it refuses, the end of its message)
    *(
        ("cancel", end, "only queued or running jobs can be cancelled")
        for end in ("failed", "succeeded", "cancelled")
    ),
    *(
        ("retry", state, "only failed or cancelled jobs can be retried")
        for state in ("queued", "running", "succeeded")
    ),
]


@pytest.mark.parametrize("transition, state, rule", REFUSED)
def test_lifecycle_cancel_or_retry_from_a_wrong_state_is_a_conflict(
    settings: Settings, transition: str, state: str, rule: str
):
    job_id = learner_with_tasks(settings)[0]
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(state=state))
    with pytest.raises(JobStateConflict) as err, session_scope(settings) as s:
        getattr(lifecycle, transition)(s, s.get(Job, job_id))
    assert err.value.detail == f"job {job_id} is {state}; {rule}"


def test_lifecycle_retry_queues_a_failed_job_from_scratch(settings: Settings):
    job_id, token = claimed(settings)
    lifecycle.renew_lease(settings, job_id, token, {"step": 1})
    lifecycle.fail(settings, job_id, token, "boom")
    with session_scope(settings) as s:
        lifecycle.retry(s, s.get(Job, job_id))
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert (job.state, job.task.state) == ("queued", "queued")
        assert job.error is None and job.progress is None and job.finished_at is None
    assert lifecycle.claim(settings, job_id) not in (None, lifecycle.WAIT)


def test_lifecycle_retry_without_training_data_is_a_conflict(settings: Settings):
    job_id = learner_with_tasks(settings, data=False)[0]
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id == job_id).values(state=JobState.CANCELLED))
    deleted = "was deleted; upload the task again"
    with pytest.raises(JobStateConflict, match=deleted), session_scope(settings) as s:
        lifecycle.retry(s, s.get(Job, job_id))


def test_lifecycle_requeue_policy_backs_off_within_its_caps():
    policy = RequeuePolicy(lease_s=30, countdown_s=2, max_s=20, stuck_after_s=60)
    assert [policy.waiting(w) for w in (0, 1, 5, 15, 100)] == [2, 2, 5, 15, 20]
    assert RequeuePolicy(30, 2, 100, 30).waiting(100) == 15  # half of stuck_after_s: never taken for lost
    assert RequeuePolicy.leased(4.5) == 5.5
    assert policy.lease == timedelta(seconds=30) and policy.renew_every_s == 10  # three tries per lease


def test_lifecycle_requeue_and_start_next_send_the_job(settings: Settings):
    first, second = learner_with_tasks(settings, 2)
    broker = Broker()
    lifecycle.requeue(settings, broker, second, lifecycle.waiting_countdown(settings, second))
    assert broker.sent == [(second, 2)]  # just created: the first look comes after countdown_s
    assert lifecycle.start_next(settings, broker, first) == first  # the oldest queued job of the learner
    job_id, token = claimed(settings)
    lifecycle.fail(settings, job_id, token, "boom")
    assert lifecycle.start_next(settings, broker, job_id) is None
    assert broker.sent == [(second, 2), (first, None)]


def test_lifecycle_sweep_expired_sends_lost_jobs_only(settings: Settings):
    queued, running = learner_with_tasks(settings)[0], claimed(settings)[0]
    lifecycle.sweep_expired(settings, Broker())  # other tests' leftovers
    broker = Broker()
    assert lifecycle.sweep_expired(settings, broker) == []  # just enqueued, lease running
    old = utcnow() - timedelta(seconds=600)
    with session_scope(settings) as s:
        s.execute(update(Job).where(Job.id.in_([queued, running])).values(enqueued_at=old, lease_until=old))
    assert sorted(lifecycle.sweep_expired(settings, broker)) == sorted([queued, running])
    assert lifecycle.sweep_expired(settings, broker) == [running]  # a dead lease stays lost until claimed
    assert sorted(j for j, _ in broker.sent) == sorted([queued, running, running])


def test_lifecycle_delivery_options_are_the_apps_and_the_tasks(tmp_path: Path):
    conf = make_celery(Settings(data_dir=tmp_path)).conf
    options = lifecycle.DELIVERY.task_options()
    assert options == {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}
    app_wide = (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.task_ignore_result)
    assert app_wide == tuple(options.values())

"""The training job: claim the learner's turn, train from the active version, publish a new version.

Order of a job (the DB is the truth, the broker message only names the job; every state change is a
transition of core/lifecycle.py):
1. claim: only the oldest unfinished task of its learner may run; a conditional UPDATE takes a lease,
   so a duplicate delivery or a second worker does nothing. Not its turn: re-enqueue with a countdown.
2. train outside any transaction, from the learner's ACTIVE version (so after a rollback new tasks
   continue from the version that serves), or from the newest version when the regression gate held
   it after the active one (core/gate.py: held work is not lost); progress and cancel checks are short
   transactions.
3. publish: checkpoint and classifier written atomically and their sha256 verified (worker/versions.py),
   then ONE transaction (guarded by the lease) inserts the version and its evaluations, and activates
   it unless the learner's activation policy (the regression gate) holds it.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import activation, gate, lifecycle
from core.datasets import load_arrays
from core.db import session_scope
from core.errors import Gone, UnknownJob, UnknownLearner
from core.fidelity import job_warnings
from core.lifecycle import JobState, LeaseLost, TaskState
from core.logs import log_context
from core.orm import Evaluation, Job, LearnedClass, Learner, ModelVersion, Task, utcnow
from core.settings import Settings
from core.storage import ArtifactStore
from worker import gating
from worker.progress import JobReporter
from worker.versions import discard_unpublished, verify_parent, version_row, write_version_files

log = logging.getLogger(__name__)

# A one-class task's fidelity judge learns its class against at most this many real held-out images of
# each known class: the figure the benchmark measured the judge with (benchmarks.accuracy
# --fidelity-reference 200), and it bounds the judge's time however large the holdouts are.
REFERENCE_PER_CLASS = 200


@dataclass
class Plan:
    """What a claimed job needs, read in one short transaction."""

    learner_id: int
    task_id: int
    config: dict[str, Any]
    data_uri: str
    parent: dict[str, Any] | None  # the active version: id, number, checkpoint uri and sha256
    holdouts: list[tuple[int, str]]  # (task id, holdout uri) of every task with a holdout
    references: list[str]  # holdout uris of the learn tasks that trained, newest first (fidelity_reference)


def run_job(settings: Settings, app: Celery, job_id: int) -> str:
    with log_context(job_id=job_id, learner=learner_name(settings, job_id)):
        token = lifecycle.claim(settings, job_id)
        if token == lifecycle.WAIT:
            countdown = lifecycle.waiting_countdown(settings, job_id)  # backs off while the earlier trains
            log.info("job %s: an earlier task of the learner comes first; again in %.1f s", job_id, countdown)
            lifecycle.requeue(settings, app, job_id, countdown)
            return "waiting for an earlier task of the learner"
        if token is None:
            return leased_or_done(settings, app, job_id)
        outcome = execute(settings, job_id, token)
        log.info("job %s: %s", job_id, outcome)
        lifecycle.start_next(settings, app, job_id)
        return outcome


def learner_name(settings: Settings, job_id: int) -> str | None:
    """For the log context: which learner a job trains (None for an unknown job)."""
    with session_scope(settings) as s:
        return s.scalar(select(Learner.name).join(Job, Job.learner_id == Learner.id).where(Job.id == job_id))


def leased_or_done(settings: Settings, app: Celery, job_id: int) -> str:
    """The claim failed: the job is finished, or another worker holds its lease (or did, until it died).

    A prefork pool child killed mid-job has its message requeued by Celery at once
    (reject_on_worker_lost) while its lease still runs; so look again when the lease can have run out
    instead of dropping the message and leaving the job to the sweeper. A live worker keeps renewing
    its lease, so a duplicate delivery comes back every `lease_s` until the job ends, then stops.
    """
    left = lifecycle.lease_left(settings, job_id)
    if left is None:
        log.info("job %s: nothing to do (finished or cancelled)", job_id)
        return "nothing to do (finished or cancelled)"
    lifecycle.requeue(settings, app, job_id, lifecycle.RequeuePolicy.leased(left))
    log.info("job %s: leased by another worker for %.1f s more; looking again then", job_id, left)
    return f"leased by another worker for {left:.1f} s more; looking again then"


def execute(settings: Settings, job_id: int, token: str) -> str:
    """Train and publish under the lease; the job's end (state and error) is recorded by core.lifecycle."""
    from dgm import TrainingCancelled

    reporter = JobReporter(settings, job_id, token)
    try:
        with reporter.renewing():  # a short lease stays safe through phases without progress writes
            train_and_publish(settings, job_id, token, reporter)
        return JobState.SUCCEEDED
    except (LeaseLost, TrainingCancelled) as exc:
        if reporter.lease_lost or isinstance(exc, LeaseLost):
            log.warning("job %s: lease lost; another worker owns it", job_id)
            return "lease lost"
        lifecycle.stop_cancelled(settings, job_id, token)
        return JobState.CANCELLED
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, which stays retryable
        log.exception("job %s failed", job_id)
        detail = f"{type(exc).__name__}: {exc}"
        if not exc.__class__.__module__.startswith(("dgm", "core")):
            detail += "\n" + "".join(traceback.format_exception(exc, limit=-3))
        lifecycle.fail(settings, job_id, token, detail)
        return JobState.FAILED


def read_plan(s: Session, job_id: int) -> Plan:
    job = s.get(Job, job_id)
    if job is None:
        raise UnknownJob(f"job {job_id} no longer exists (its learner was deleted); nothing to train")
    task, learner = job.task, s.get(Learner, job.learner_id)
    if learner is None:
        raise UnknownLearner(f"the learner of job {job_id} no longer exists; nothing to train")
    if task.data_uri is None:
        raise Gone(f"the training data of task {task.id} was deleted; upload the task again")
    parent = gating.parent_version(s, learner)  # the active version, or held work after it
    holdouts = s.execute(
        select(Task.id, Task.holdout_uri, Task.state, Task.kind)
        .where(Task.learner_id == learner.id, Task.holdout_uri.is_not(None))
        .order_by(Task.ordinal.desc())
    ).all()
    return Plan(
        learner_id=learner.id,
        task_id=task.id,
        config=learner.config,
        data_uri=task.data_uri,
        parent=None
        if parent is None
        else {
            "id": parent.id,
            "number": parent.number,
            "uri": parent.checkpoint_uri,
            "sha256": parent.checkpoint_sha256,
        },
        holdouts=[(t.id, t.holdout_uri) for t in holdouts],
        # a class uploaded again (after a rollback, or a cancelled upload) has two holdouts: the newest
        # task that taught it is the one its version learned from, and tasks that did not train taught
        # nothing
        references=[t.holdout_uri for t in holdouts if t.state == TaskState.TRAINED and t.kind == "learn"],
    )


def train_and_publish(settings: Settings, job_id: int, token: str, reporter: JobReporter) -> None:
    from dgm import Learner as DGMLearner
    from dgm import LearnerConfig

    with session_scope(settings) as s:
        kind = s.scalar(select(Task.kind).join(Job, Job.task_id == Task.id).where(Job.id == job_id))
        plan = read_plan(s, job_id) if kind != "forget" else None
    if plan is None:  # a forget task (issue 11): same claim, lease and ordering, its own work
        from worker.forget import forget_and_publish

        return forget_and_publish(settings, job_id, token, reporter)
    store = ArtifactStore(settings.artifacts)
    x, labels = load_arrays(store.path(plan.data_uri))
    parent = "a new network" if plan.parent is None else f"version id {plan.parent['id']}"
    log.info("job %s: training on %d images from %s", job_id, len(x), parent)
    if plan.parent is None:
        learner = DGMLearner(LearnerConfig.from_dict(plan.config), seed=0, device=settings.device)
    else:
        verify_parent(store, plan.parent)
        learner = DGMLearner.load(store.path(plan.parent["uri"]), device=settings.device)
    reporter.renew()  # loading the parent took time the lease must cover
    reference = fidelity_reference(learner, store, plan.references, labels)
    report = learner.learn_task(
        x, labels, progress=reporter.progress, should_stop=reporter.should_stop, reference=reference
    )
    reporter.renew()  # evaluation and the file writes come next, with no progress writes
    scored = evaluate(learner, store, plan.holdouts)
    files = write_version_files(store, learner, plan, job_id)
    try:
        number = publish(settings, job_id, token, plan, report, scored, files, list(learner.classes))
    except Exception:
        discard_unpublished(settings, store, files["checkpoint"][0])
        raise
    log.info("job %s: published version %d after %.2f s of training", job_id, number, report.seconds)
    for warning in job_warnings(report.as_dict()):
        log.warning("job %s: %s", job_id, warning)
    if not settings.keep_training_data:
        store.delete(plan.data_uri)


def fidelity_reference(
    learner: Any, store: ArtifactStore, holdouts: list[str], labels: list[str]
) -> tuple[np.ndarray, list[str]] | None:
    """For a one-class task: real held-out images of the classes the learner knows (at most
    REFERENCE_PER_CLASS each, from the holdouts in the order given, each in its own order), against
    which its fidelity judge learns the new class (dgm/fidelity.py one_class_fidelity). None for a
    multi-class task (its judge needs none) or when no holdout holds a known class; the task's class
    then reports no fidelity."""
    from dgm.images import to_unit_float

    if len(set(labels)) != 1:
        return None
    known, taken = set(learner.classes), Counter[str]()
    xs, ys = [], []
    for uri in holdouts:
        x, held = load_arrays(store.path(uri))
        keep = []
        for i, c in enumerate(held):
            if c in known and taken[c] < REFERENCE_PER_CLASS:
                taken[c] += 1
                keep.append(i)
        if keep:  # one upload may be uint8 and another float in [0, 1]: one scale before joining them
            xs.append(to_unit_float(x[keep]))
            ys += [held[i] for i in keep]
    return (np.concatenate(xs), ys) if ys else None


def evaluate(learner: Any, store: ArtifactStore, holdouts: list[tuple[int, str]]) -> dict[int, gating.Scored]:
    """Every holdout whose classes this learner knows, scored: its accuracy is one row of the accuracy
    matrix, and its scores let the gate compare on the active version's classes (worker/gating.py)."""
    from dgm.learner import normalise_labels

    out = {}
    for task_id, uri in holdouts:
        x, raw = load_arrays(store.path(uri))
        labels = normalise_labels(raw, len(x))
        if labels and set(labels) <= set(learner.classes):
            out[task_id] = gating.Scored(labels, learner.predict(x)[1], list(learner.classes))
    return out


def publish(
    settings: Settings,
    job_id: int,
    token: str,
    plan: Plan,
    report: Any,
    scored: dict[int, gating.Scored],
    files: dict[str, Any],
    classes: list[str],
) -> int:
    """One transaction: version, evaluations, classes, the gate's verdict and activation, job state,
    warnings and result, task state. A version the gate holds is stored with status "held" and its
    reasons, and the active version keeps serving.

    Returns the version's number.
    """
    now, facts = utcnow(), report.as_dict()
    with session_scope(settings) as s:
        verdict = gating.verdict(s, plan.learner_id, plan.task_id, scored, facts.get("fidelity"))
        live = verdict["decision"] == "activated"
        task_values = {} if settings.keep_training_data else {"data_uri": None}
        warnings = job_warnings(facts)
        lifecycle.succeed(s, job_id, token, task_values, warnings=warnings, result={"gate": verdict})
        number = (
            s.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.learner_id == plan.learner_id))
            or 0
        ) + 1
        version = version_row(
            plan, number, classes, report, facts, files,
            mask_usage=report.mask_usage,
            units_added=report.units_added,
            status="published" if live else "held",
            hold_reasons=gate.hold_reasons(verdict),
        )  # fmt: skip
        s.add(version)
        s.flush()
        for task_id, held in scored.items():
            s.add(
                Evaluation(
                    version_id=version.id, task_id=task_id, accuracy=held.accuracy, samples=len(held.labels)
                )
            )
        for name in report.classes:
            s.add(
                LearnedClass(
                    learner_id=plan.learner_id, task_id=plan.task_id, index=classes.index(name), name=name
                )
            )
        if live:  # held: the active version keeps serving (core/gate.py)
            activation.activate(s, plan.learner_id, version.id, at=now)
    return number

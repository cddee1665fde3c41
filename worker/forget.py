"""The forget job: a task of kind "forget" trains a new version without one class.

It runs through the same job machinery as a learn task (claim, lease, cancel, ordering with the
learner's other tasks); worker/train.py hands it here. From the ACTIVE version:
1. `dgm.Learner.forget` removes the class's generator head, releases its task's mask when no class of
   that task remains, and rebuilds the classifier from fresh replay of the remaining classes;
2. every holdout (and kept training data) holding the class is rewritten without it into a NEW file;
3. one transaction publishes and activates the version (removed_classes set), swaps the tasks to the
   rewritten files, marks the class forgotten and records what was removed in the job's result;
4. only then are the old data files deleted. A failure before the commit removes the new files and
   leaves everything as it was; the job stays retryable.
Older versions still hold the class until an admin purges them (service/routes/forget.py).
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import activation, lifecycle
from core.datasets import load_arrays, to_npz_bytes
from core.db import session_scope
from core.errors import Conflict, UnknownJob
from core.lifecycle import TaskState
from core.orm import Evaluation, Job, LearnedClass, Learner, ModelVersion, Task
from core.settings import Settings
from core.storage import ArtifactStore
from worker.progress import JobReporter
from worker.versions import discard_unpublished, verify_parent, version_row, write_version_files

log = logging.getLogger(__name__)
LAYERS = ("conv1", "conv2", "conv3")
Rewritten = list[tuple[int, str, str, str | None, int]]  # task id, field, old uri, new uri, images left


@dataclass
class ForgetPlan:
    learner_id: int
    task_id: int
    labels: list[str]
    parent: dict[str, Any] | None  # the active version: id, number, uri, sha256
    max_drop: float  # the learner's regression gate threshold (Learner.gate_max_drop)
    learned_by: dict[str, int]  # label -> ordinal of the task that learned it
    # (task id, field, uri) of every holdout and kept training file of the learner
    data_files: list[tuple[int, str, str]]


def read_forget_plan(s: Session, job_id: int) -> ForgetPlan:
    job = s.get(Job, job_id)
    if job is None:
        raise UnknownJob(f"job {job_id} no longer exists (its learner was deleted); nothing to forget")
    task = job.task
    parent = s.get(ModelVersion, task.learner.active_version_id) if task.learner.active_version_id else None
    learned = s.execute(
        select(LearnedClass.name, Task.ordinal)
        .join(Task, Task.id == LearnedClass.task_id)
        .where(LearnedClass.learner_id == task.learner_id, LearnedClass.name.in_(task.classes))
        .order_by(Task.ordinal)
    ).all()
    files = []
    for t in s.scalars(select(Task).where(Task.learner_id == task.learner_id, Task.kind == "learn")):
        files += [(t.id, "holdout_uri", t.holdout_uri)] if t.holdout_uri else []
        files += [(t.id, "data_uri", t.data_uri)] if t.data_uri and t.state == TaskState.TRAINED else []
    return ForgetPlan(
        learner_id=task.learner_id,
        task_id=task.id,
        labels=list(task.classes),
        parent=None
        if parent is None
        else {
            "id": parent.id,
            "number": parent.number,
            "uri": parent.checkpoint_uri,
            "sha256": parent.checkpoint_sha256,
        },
        max_drop=task.learner.gate_max_drop,
        learned_by={name: ordinal for name, ordinal in learned},
        data_files=files,
    )


def forget_and_publish(settings: Settings, job_id: int, token: str, reporter: JobReporter) -> None:
    from dgm import DGMInputError, TrainingCancelled
    from dgm import Learner as DGMLearner

    with session_scope(settings) as s:
        plan = read_forget_plan(s, job_id)
    if plan.parent is None:
        raise Conflict("the learner has no active version to forget from; upload a task first")
    store = ArtifactStore(settings.artifacts)
    verify_parent(store, plan.parent)
    learner = DGMLearner.load(store.path(plan.parent["uri"]), device=settings.device)
    reporter.renew()
    if reporter.should_stop():
        raise TrainingCancelled("cancelled before forgetting")
    pruned = copy.deepcopy(learner)
    try:
        report = learner.forget(plan.labels)
        pruned_report = pruned.forget(plan.labels, rebuild=False)
    except DGMInputError as exc:
        raise Conflict(
            f"the active version {plan.parent['number']} cannot forget {plan.labels}: {exc}. Activate a "
            "version that knows the class, then retry this job"
        ) from exc
    reporter.renew()
    rewritten = rewrite_data(store, plan)
    try:
        accuracy = evaluate(learner, store, plan, rewritten)
        kept = evaluate(pruned, store, plan, rewritten)
        behind = {
            t: (kept[t][0], acc) for t, (acc, _) in accuracy.items() if kept[t][0] - acc > plan.max_drop
        }
        if behind:  # the fresh draw lost accuracy the old classifier had: serve the pruned one
            log.warning("job %s: rebuilt classifier behind the pruned one on tasks %s", job_id, behind)
            learner, report, accuracy = pruned, pruned_report, kept
        files = write_version_files(store, learner, plan, job_id)  # type: ignore[arg-type] # reads learner_id
        try:
            number = publish_forget(settings, job_id, token, plan, report, accuracy, files, rewritten)
        except Exception:
            discard_unpublished(settings, store, files["checkpoint"][0])
            raise
    except BaseException:
        for _, _, _, new_uri, _ in rewritten:
            if new_uri:
                store.delete(new_uri)
        raise
    for _, _, old_uri, _, _ in rewritten:
        store.delete(old_uri)
    log.info("job %s: forgot %s; published version %d", job_id, plan.labels, number)


def rewrite_data(store: ArtifactStore, plan: ForgetPlan) -> Rewritten:
    """Every data file holding a removed class, rewritten without it to a new file (atomically).

    Returns (task id, field, old uri, new uri or None when nothing is left, images left) per file.
    """
    out = []
    for task_id, field, uri in plan.data_files:
        x, labels = load_arrays(store.path(uri))
        keep = np.array([lab not in plan.labels for lab in labels], dtype=bool)
        if keep.all():
            continue
        new_uri = None
        if keep.any():
            new_uri = f"{uri.rsplit('/', 1)[0]}/{field.removesuffix('_uri')}-{uuid.uuid4().hex[:8]}.npz"
            store.write_bytes(
                new_uri, to_npz_bytes(x[keep], [lab for lab, k in zip(labels, keep, strict=True) if k])
            )
        out.append((task_id, field, uri, new_uri, int(keep.sum())))
    return out


def evaluate(
    learner: Any, store: ArtifactStore, plan: ForgetPlan, rewritten: Rewritten
) -> dict[int, tuple[float, int]]:
    """Accuracy on every holdout as it will be after the forget (the rewritten ones without the class)."""
    swapped = {(t, f): new for t, f, _, new, _ in rewritten}
    out = {}
    for task_id, field, uri in plan.data_files:
        if field != "holdout_uri":
            continue
        uri = swapped.get((task_id, field), uri)
        if uri is None:
            continue
        x, labels = load_arrays(store.path(uri))
        if len(labels) and set(labels) <= set(learner.classes):
            out[task_id] = (learner.evaluate(x, labels), len(labels))
    return out


def removed_summary(plan: ForgetPlan, report: Any) -> dict[str, Any]:
    """What the job's result and the history say was removed."""
    released = report.released
    return {
        "label": plan.labels[0] if len(plan.labels) == 1 else plan.labels,
        "learned_by_task": plan.learned_by.get(plan.labels[0]),
        "heads_removed": report.heads_removed,
        # the learn task whose mask went back to later tasks (no class of it is left), if any
        "task_released": plan.learned_by.get(plan.labels[0]) if report.tasks_removed else None,
        "mask_units_released": released,
        # "rebuilt" from replay of the remaining classes; "pruned": the parent's classifier minus the
        # class, kept because the rebuilt one fell more than gate_max_drop behind it on a holdout
        "classifier": report.classifier,
    }


def publish_forget(
    settings: Settings,
    job_id: int,
    token: str,
    plan: ForgetPlan,
    report: Any,
    accuracy: dict[int, tuple[float, int]],
    files: dict[str, Any],
    rewritten: Rewritten,
) -> int:
    """One transaction: the version (active, removed_classes), its evaluations, the class marked
    forgotten, the tasks' data swapped to the rewritten files, the job's result. Returns the number."""
    facts = report.as_dict()
    with session_scope(settings) as s:
        result = {"removed": removed_summary(plan, report)}
        lifecycle.succeed(s, job_id, token, warnings=[], result=result)
        number = (
            s.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.learner_id == plan.learner_id))
            or 0
        ) + 1
        version = new_version(plan, number, report, facts, files)
        s.add(version)
        s.flush()
        for task_id, (acc, n) in accuracy.items():
            s.add(Evaluation(version_id=version.id, task_id=task_id, accuracy=acc, samples=n))
        s.execute(
            update(LearnedClass)
            .where(
                LearnedClass.learner_id == plan.learner_id,
                LearnedClass.name.in_(plan.labels),
                LearnedClass.forgotten_by_task_id.is_(None),
            )
            .values(forgotten_by_task_id=plan.task_id)
        )
        for task_id, field, _, new_uri, left in rewritten:
            values: dict[str, Any] = {field: new_uri}
            if field == "holdout_uri":
                values["n_holdout"] = left
            s.execute(update(Task).where(Task.id == task_id).values(**values))
        activate_forgetting(s, plan, version.id)
    return number


def new_version(plan: ForgetPlan, number: int, report: Any, facts: dict, files: dict) -> ModelVersion:
    return version_row(
        plan, number, list(report.classes), report, facts, files,
        mask_usage={layer: 0.0 for layer in LAYERS},  # a forget task takes no mask
        units_added={layer: 0 for layer in LAYERS},
        status="published",
        removed_classes=list(plan.labels),
    )  # fmt: skip


def activate_forgetting(s: Session, plan: ForgetPlan, version_id: int) -> None:
    """The admin asked for the class to go: the new version serves at once (no gate), and a rollout
    whose candidate still holds the class ends."""
    learner = s.get(Learner, plan.learner_id)
    candidate = s.get(ModelVersion, learner.candidate_version_id) if learner.candidate_version_id else None
    holds = candidate is not None and bool(set(plan.labels) & set(candidate.classes))
    activation.activate(s, plan.learner_id, version_id, end_rollout=holds)

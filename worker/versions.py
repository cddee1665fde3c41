"""A new version's files and row, for both publishes (a learn task's, worker/train.py, and a forget
task's, worker/forget.py): the files written atomically and verified before anything is published,
removed again when publishing fails; the parent's checkpoint verified before training from it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select

from core.db import session_scope
from core.errors import ArtifactCorrupt, ArtifactWriteFailed
from core.orm import ModelVersion
from core.settings import Settings
from core.storage import ArtifactStore

log = logging.getLogger(__name__)


def verify_parent(store: ArtifactStore, parent: dict[str, Any]) -> None:
    try:
        store.verify(parent["uri"], parent["sha256"])
    except ArtifactCorrupt as exc:
        raise ArtifactCorrupt(
            f"cannot train from version {parent['number']}: {exc.detail}. Restore the file, or activate "
            "another version, then retry this job"
        ) from exc


def write_version_files(store: ArtifactStore, learner: Any, plan: Any, job_id: int) -> dict[str, Any]:
    """Write both files atomically, then re-read them to check the digests before anything is published.

    On any failure (disk full, read-only or damaged store) the version's folder is removed again, so a
    failed job leaves no files behind, and the error says which file could not be written and why.
    """
    folder = f"learners/{plan.learner_id}/versions/job{job_id}-{uuid.uuid4().hex[:8]}"
    files: dict[str, Any] = {}
    try:
        for kind, save in (("checkpoint", learner.save), ("classifier", learner.save_classifier)):
            uri = f"{folder}/{kind}.safetensors"
            try:
                size, digest = store.write_with(uri, save)
            except OSError as exc:
                raise ArtifactWriteFailed(
                    f"could not write the new version's {kind} to the artifact store ({store.path(uri)}): "
                    f"{exc.strerror or exc}. Free space on, or make writable, DGM_ARTIFACT_DIR "
                    f"({store.root}), then retry this job"
                ) from exc
            store.verify(uri, digest)
            files[kind] = (uri, size, digest)
    except BaseException:
        store.delete_tree(folder)
        raise
    return files


def discard_unpublished(settings: Settings, store: ArtifactStore, checkpoint_uri: str) -> None:
    """Publishing failed (lease lost, database gone): remove the files unless a version row holds them.

    A connection lost at COMMIT leaves it unknown whether the version went in, so the database is
    asked; when it cannot answer either, the files stay (an unreferenced folder is harmless, a version
    row without its files is not).
    """
    try:
        with session_scope(settings) as s:
            held = s.scalar(select(ModelVersion.id).where(ModelVersion.checkpoint_uri == checkpoint_uri))
    except Exception:  # noqa: BLE001 - unknown outcome: keep the files
        log.warning("could not check whether %s was published; keeping it", checkpoint_uri)
        return
    if held is None:
        store.delete_tree(checkpoint_uri.rsplit("/", 1)[0])


def version_row(
    plan: Any, number: int, classes: list[str], report: Any, facts: dict, files: dict, **fields
) -> ModelVersion:
    """The version row every publish writes (a learn task's and a forget task's): where its files are,
    what the report says; `fields` adds what differs (mask usage, activation, status)."""
    (ck_uri, ck_bytes, ck_sha), (cl_uri, cl_bytes, cl_sha) = files["checkpoint"], files["classifier"]
    return ModelVersion(
        learner_id=plan.learner_id,
        number=number,
        task_id=plan.task_id,
        parent_id=plan.parent["id"] if plan.parent else None,
        classes=classes,
        checkpoint_uri=ck_uri,
        checkpoint_sha256=ck_sha,
        checkpoint_bytes=ck_bytes,
        classifier_uri=cl_uri,
        classifier_sha256=cl_sha,
        classifier_bytes=cl_bytes,
        parameters=report.parameters,
        widths=report.widths,
        report=facts,
        fidelity=facts.get("fidelity"),
        train_seconds=report.seconds,
        **fields,
    )

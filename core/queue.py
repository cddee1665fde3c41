"""The Celery app and the stable job names. The service enqueues by name, so it never imports worker/.

The broker only says "look at job N"; the database says what job N is (core/lifecycle.py). Redis runs
with the delivery options of core/lifecycle.py (acks_late, reject_on_worker_lost) and a visibility
timeout above the longest training, so a killed worker's job is redelivered. The embedded filesystem
broker can lose a message on a hard kill; the sweeper (core/sweeper.py) re-enqueues such jobs from the
database.
"""

from __future__ import annotations

from celery import Celery

from core.settings import Settings

TRAIN_JOB = "dgm.train_task"


def make_celery(settings: Settings) -> Celery:
    from core.lifecycle import DELIVERY  # imported here: core.lifecycle sends through this module

    app = Celery("dgm", broker=settings.broker_url, set_as_current=False)
    options: dict[str, object] = {}
    if settings.broker_url.startswith("filesystem"):
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    elif settings.broker_url.startswith(("redis", "rediss")):
        options = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_acks_late=DELIVERY.acks_late,
        task_reject_on_worker_lost=DELIVERY.reject_on_worker_lost,
        task_ignore_result=DELIVERY.ignore_result,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return app


def enqueue_train(app: Celery, settings: Settings, job_id: int, countdown: float = 0) -> None:
    """Send "train job N". Call only after the transaction that created or reset the job committed."""
    app.send_task(TRAIN_JOB, args=[job_id], queue=settings.queue, countdown=countdown or None)

"""The worker's Celery app: `celery -A worker.app worker -Q <DGM_QUEUE>` or `dgm worker`."""

from __future__ import annotations

from celery.signals import setup_logging, worker_process_init, worker_ready, worker_shutdown

from core.lifecycle import DELIVERY
from core.liveness import Heartbeat
from core.logs import configure_logging
from core.queue import TRAIN_JOB, make_celery
from core.settings import get_settings

settings = get_settings()
app = make_celery(settings)


@worker_process_init.connect  # prefork children; the solo pool runs the call below
def _limit_threads(**_kwargs: object) -> None:
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)


_limit_threads()


@worker_process_init.connect  # a prefork child: never share the parent's pooled connections (heartbeat)
def _own_connections(**_kwargs: object) -> None:
    from core.db import engine_for

    engine_for(settings.database_url).dispose(close=False)


def _json_logs(loglevel: int | None = None, **_kwargs: object) -> None:
    configure_logging(json_lines=True, level=loglevel or "INFO")


if settings.log_json:  # a receiver of setup_logging replaces Celery's own (plain text) log setup
    setup_logging.connect(_json_logs, weak=False)


heartbeat: Heartbeat | None = None


@worker_ready.connect  # the main process, once it consumes; a prefork pool's children share its beat
def _start_heartbeat(**_kwargs: object) -> None:
    global heartbeat
    heartbeat = Heartbeat(settings, {"queue": settings.queue, "device": settings.device or "auto"}).start()


@worker_shutdown.connect  # a clean stop (SIGTERM, SIGINT): the row goes at once, alive drops now
def _stop_heartbeat(**_kwargs: object) -> None:
    if heartbeat is not None:
        heartbeat.stop()


@app.task(name=TRAIN_JOB, **DELIVERY.task_options())  # redelivery policy: core/lifecycle.py
def train_task(job_id: int) -> str:
    from worker.train import run_job

    return run_job(settings, app, job_id)

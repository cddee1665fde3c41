"""Progress and cancellation for a running job: throttled, each write its own short transaction.

Every write also renews the job's lease (`core.lifecycle.renew_lease`); a write that finds the lease
gone (the sweeper handed the job to another worker) makes `should_stop` true, so this worker stops
without publishing anything.
`renewing()` renews it from a thread as well, every lease_s / 3, so phases that report no progress
(loading the parent, evaluation, writing the files, one long step) never outlive a short lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError

from core.lifecycle import LeaseLost, RequeuePolicy, renew_lease
from core.settings import Settings

log = logging.getLogger(__name__)


class JobReporter:
    def __init__(self, settings: Settings, job_id: int, token: str) -> None:
        self.settings, self.job_id, self.token = settings, job_id, token
        self.last_write = 0.0
        self.cancel_requested = False
        self.lease_lost = False
        self.logged_tenth = -1  # progress goes to the log once per tenth of the steps

    def progress(self, p) -> None:  # noqa: ANN001 - dgm.Progress; dgm is imported lazily
        final = p.step >= p.total
        if not final and time.monotonic() - self.last_write < self.settings.progress_interval_s:
            return
        eta = p.eta_seconds
        self.write(
            {
                "step": p.step,
                "total": p.total,
                "epoch": p.epoch,
                "epochs": p.epochs,
                "fraction": round(p.step / max(p.total, 1), 4),
                "losses": {k: round(float(v), 5) for k, v in p.losses.items()},
                "elapsed_s": round(p.seconds, 2),
                "step_s": round(p.seconds / p.step, 6) if p.step else None,  # read by /metrics
                "eta_s": None if eta is None else round(eta, 1),
            }
        )
        tenth = p.step * 10 // max(p.total, 1)
        if tenth > self.logged_tenth:
            self.logged_tenth = tenth
            losses = " ".join(f"{k}={float(v):.4g}" for k, v in p.losses.items())
            log.info("job %s: step %d/%d %s", self.job_id, p.step, p.total, losses)

    def renew(self) -> None:
        """Renew the lease now; stop here (LeaseLost) if another worker holds the job: it publishes."""
        self.write(None)
        if self.lease_lost:
            raise LeaseLost(f"job {self.job_id} is no longer leased to this worker")

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_write >= self.settings.progress_interval_s:
            self.write(None)
        return self.cancel_requested or self.lease_lost

    @contextmanager
    def renewing(self) -> Iterator[None]:
        """Renew the lease every lease_s / 3 from a daemon thread while the block runs."""
        stop, every = threading.Event(), RequeuePolicy.of(self.settings).renew_every_s

        def loop() -> None:
            while not stop.wait(every) and not self.lease_lost:
                try:
                    self.write(None)
                except Exception as exc:  # noqa: BLE001 - the next renewal (or progress write) tries again
                    log.warning("job %s: could not renew the lease: %s", self.job_id, exc)

        thread = threading.Thread(target=loop, name=f"dgm-lease-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def write(self, progress: dict | None) -> None:
        """Renew the lease (and store progress); read the cancel flag.

        A connection the database dropped (restart, failover, pg_terminate_backend) is retried once on a
        fresh one: SQLAlchemy has invalidated the pool by then. A second failure propagates and fails the
        job cleanly (it stays retryable).
        """
        self.last_write = time.monotonic()
        try:
            self._write(progress)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("job %s: database connection lost during a progress write; retrying", self.job_id)
            self._write(progress)

    def _write(self, progress: dict | None) -> None:
        cancel = renew_lease(self.settings, self.job_id, self.token, progress)
        if cancel is None:
            self.lease_lost = True
        else:
            self.cancel_requested = cancel

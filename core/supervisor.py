"""`dgm serve` keeps its embedded worker running: restarted when it exits, with backoff, saying why.

The first restart comes after `worker_restart_s`; each exit within STABLE_S of its start doubles the
delay up to `worker_restart_max_s` (a worker that cannot start, e.g. a bad DGM_DATABASE_URL, does not
spin); a worker that ran STABLE_S or more starts the count again. A job the dead worker was training is
sent again by the API's sweeper once its lease runs out, and the new worker takes it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dgm.serve")
STABLE_S = 60.0


def exit_reason(code: int) -> str:
    """Popen.returncode in words: a negative code is the signal that ended the process."""
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Run `cmd` in a child process from a thread; start it again whenever it exits, until `stop()`."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        first_delay: float,
        max_delay: float,
        preexec_fn: Callable[[], Any] | None = None,
    ) -> None:
        self.cmd, self.env, self.preexec_fn = cmd, env, preexec_fn
        self.first_delay, self.max_delay = first_delay, max_delay
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="dgm-worker-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen | None:
        with self._lock:  # stop() either sees this process or prevents it
            if self._stop.is_set():
                return None
            # preexec_fn (PR_SET_PDEATHSIG) is what we need here: the worker dies with `dgm serve`
            self.proc = subprocess.Popen(self.cmd, env=self.env, preexec_fn=self.preexec_fn)  # noqa: PLW1509
            return self.proc

    def _loop(self) -> None:
        delay = self.first_delay
        while True:
            proc = self._spawn()
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stop.is_set():
                return
            ran = time.monotonic() - started
            if ran >= STABLE_S:
                delay = self.first_delay
            self.restarts += 1
            log.warning(
                "embedded worker (pid %d) %s after %.1f s; restarting it in %.1f s (restart %d)",
                proc.pid, exit_reason(code), ran, delay, self.restarts,
            )  # fmt: skip
            if self._stop.wait(delay):
                return
            delay = min(max(delay * 2, 1.0), self.max_delay)

    def stop(self, timeout: float = 20) -> None:
        """Stop restarting; SIGTERM the worker (a clean Celery shutdown), SIGKILL it after `timeout`."""
        with self._lock:
            self._stop.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)

"""Commands that run things in this process: `dgm serve`, `dgm worker`, `dgm migrate`, `dgm bench`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def worker_command(settings: Any, concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=prefork", f"--concurrency={concurrency}"]
    quiet = ["--quiet"] if settings.log_json else []  # no ASCII-art banner among the JSON lines
    return [
        sys.executable, "-m", "celery", *quiet, "-A", "worker.app", "worker", "-Q", settings.queue, *pool,
        "--without-gossip", "--without-mingle", f"--loglevel={loglevel}",
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cmd_migrate(args: argparse.Namespace) -> int:
    from core.db import upgrade
    from core.settings import get_settings

    settings = get_settings()
    upgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}: {settings.database_url}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from core.settings import get_settings

    cmd = worker_command(get_settings(), args.concurrency, args.loglevel)
    # Become the Celery worker, so SIGTERM from a supervisor (docker stop, systemd) reaches it directly;
    # a wrapper process would die and leave the worker running on its own.
    os.execve(cmd[0], cmd, child_env())
    return 1  # not reached


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if `dgm serve` dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from core.db import upgrade
    from core.settings import get_settings
    from core.supervisor import Supervisor
    from service.app import create_app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.artifacts.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    if not settings.admin_key:
        print("note: DGM_ADMIN_KEY is not set; every route but /healthz, /readyz and /docs will answer 401")
    log_config: Any = uvicorn.config.LOGGING_CONFIG
    if settings.log_json:  # the worker child reads DGM_LOG_JSON itself (worker/app.py)
        from core.logs import configure_logging

        configure_logging(json_lines=True)
        log_config = None  # uvicorn's loggers propagate to the root's JSON handler
    else:
        _plain_serve_log()
    worker = None
    if not args.no_worker:  # restarted whenever it exits, with backoff (core/supervisor.py)
        worker = Supervisor(
            worker_command(settings), child_env(), settings.worker_restart_s, settings.worker_restart_max_s,
            preexec_fn=_die_with_parent,
        ).start()  # fmt: skip
    # uvicorn re-raises SIGTERM after its shutdown; turn it into SystemExit so `finally` stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            create_app(settings), host=args.host, port=args.port, log_level="info", log_config=log_config
        )
    finally:
        if worker is not None:
            worker.stop()
    return 0


def _plain_serve_log() -> None:
    """The supervisor's lines (a restarted worker and why) on stderr beside uvicorn's own."""
    import logging

    from core.logs import PLAIN_FORMAT

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    serve_log = logging.getLogger("dgm.serve")
    serve_log.handlers, serve_log.propagate = [handler], False
    serve_log.setLevel(logging.INFO)


def cmd_bench(args: argparse.Namespace) -> int:
    rest = [a for a in args.rest if a != "--"]
    if args.which == "accuracy":
        from benchmarks.accuracy import main as bench_main
    else:
        from benchmarks.predict_latency import main as bench_main
    bench_main(rest)
    return 0

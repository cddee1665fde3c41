"""Throwaway stacks for the benchmarks (and the tests): `dgm serve` in a child process on a free port with
its own data folder, waiting for /readyz; a migrated PostgreSQL schema that is dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = ("DGM_DATABASE_URL", "DGM_BROKER_URL", "DGM_ARTIFACT_DIR", "DGM_QUEUE")
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(data: Path, **settings: str) -> dict[str, str]:
    """This environment minus any deployment settings: the embedded default under `data`, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT}
    env.update(PYTHONPATH=str(ROOT), DGM_DATA_DIR=str(data), **settings)
    return env


def start_serve(
    folder: Path, env: dict[str, str], *options: str, dgm: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start `dgm serve` (log in folder/serve.log) and wait until it is ready; returns it and its URL.

    `dgm`: the command to run (default: this interpreter's `python -m cli`).
    """
    import httpx

    port = free_port()
    cmd = [*(dgm or [sys.executable, "-m", "cli"]), "serve", "--port", str(port), *options]
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"dgm serve did not become ready:\n{(folder / 'serve.log').read_text()[-3000:]}")


@contextlib.contextmanager
def pg_schema(server: str = PG_SERVER) -> Iterator[str]:
    """A fresh schema in `server`'s database, migrated to head; dropped afterwards. Yields its URL."""
    import sqlalchemy as sa

    from core.db import upgrade

    name = f"dgm_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(server)
    with engine.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {name}"))
    url = f"{server}?options=-csearch_path%3D{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with engine.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        engine.dispose()

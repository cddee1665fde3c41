"""Helpers for the fault tests: a private redis-server, worker processes, DB polling, consistency checks.

Figures (seconds from a fault to recovery, which mechanism redelivered, attempts) go to the JSON file
named by DGM_FAULTS_RESULTS when it is set; `benchmarks/faults.py` sets it and collects them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import session_scope
from core.orm import Job, Learner, ModelVersion, Task
from core.settings import Settings
from core.storage import ArtifactStore
from dgm.shared import sha256_file
from service.app import create_app
from tests.service.support import (
    ADMIN,
    ROOT,
    TINY,
    auth,
    digits,
    pg_schema,
    settings_env,
    wait_for_text,
)
from tests.service.support import stop as stop_process

LEASE_S = 5  # short, so a dead worker's job is free again within seconds
Stack = tuple[Settings, TestClient]  # the `stack` fixture (tests/worker/conftest.py): settings and the API


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free port (never the shared 6379); `start` again reuses the port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
        ]  # fmt: skip
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, 20, "redis-server to answer PING")

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE: every message and unacked delivery in it is lost."""
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(nosave=True)
        assert self.proc is not None
        self.proc.wait(timeout=20)

    def unacked(self) -> set[bytes]:
        """Delivery tags handed to a worker and not acknowledged yet (countdowns wait among them)."""
        return set(self.client().hkeys("unacked"))

    def idle(self, queue: str, before: set[bytes] = frozenset()) -> bool:
        """No message waiting in the queue and no delivery pending except those in `before` (a dead
        worker's, which Redis hands out again only after the visibility timeout)."""
        return self.client().llen(queue) == 0 and self.unacked() <= before


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.shutdown()


@contextlib.contextmanager
def fault_stack(folder: Path, redis_url: str, **changes: Any) -> Iterator[tuple[Settings, TestClient]]:
    """A fresh migrated PostgreSQL schema, a private queue, and the API (TestClient) on them."""
    with pg_schema() as url:
        settings = Settings(
            data_dir=folder,
            database_url=url,
            broker_url=redis_url,
            artifact_dir=folder / "artifacts",
            queue=f"dgm-faults-{uuid.uuid4().hex[:8]}",
            admin_key=ADMIN,
            torch_threads=1,
            device="cpu",
            progress_interval_s=0.2,
            requeue_countdown_s=0.5,
            sweep_interval_s=0,  # the tests call sweep() themselves, to show when it redelivers
            lease_s=LEASE_S,
            **changes,
        )
        with TestClient(create_app(settings)) as client:
            yield settings, client


def worker_env(settings: Settings, database_url: str | None = None) -> dict[str, str]:
    env = settings_env(settings)
    env.update(
        DGM_LEASE_S=str(settings.lease_s),
        DGM_VISIBILITY_TIMEOUT_S=str(settings.visibility_timeout_s),
        DGM_STUCK_AFTER_S=str(settings.stuck_after_s),
    )
    if database_url:
        env["DGM_DATABASE_URL"] = database_url
    return env


def spawn_worker(
    settings: Settings, log: Path, pool: str = "solo", database_url: str | None = None
) -> subprocess.Popen:
    """A Celery worker process (not yet ready; see `ready`)."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", settings.queue, f"--pool={pool}",
        "--concurrency=1", "--without-gossip", "--without-mingle", "--loglevel=INFO",
        f"--hostname={log.stem}@%h",
    ]  # fmt: skip
    env = worker_env(settings, database_url)
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@contextlib.contextmanager
def workers(settings: Settings, *names: str, pool: str = "solo", database_url: str | None = None):
    """Start worker processes side by side, wait until each is ready, stop them all afterwards."""
    logs = [settings.data_dir / f"{name}.log" for name in names]
    procs = [spawn_worker(settings, log, pool, database_url) for log in logs]
    try:
        for proc, log in zip(procs, logs, strict=True):
            wait_for_text(log, "ready.", proc, timeout=90)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop_process(proc)


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout}s for {what}")


def job_row(settings: Settings, job_id: int) -> Job:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.task  # noqa: B018 - load it before the session closes
        return job


def wait_training(settings: Settings, job_id: int, timeout: float = 120) -> Job:
    """Until the job is running with progress > 0: a kill now lands in the middle of training."""

    def training() -> Job | None:
        job = job_row(settings, job_id)
        assert job.state in ("queued", "running"), f"job {job_id} ended before the fault: {job.error}"
        step = (job.progress or {}).get("step", 0)
        return job if job.state == "running" and step > 0 else None

    return wait_until(training, timeout, f"job {job_id} to be training")


def pid_of(job: Job) -> int:
    """The process training a job: its `worker` column is host:pid:attempt."""
    return int(job.worker.split(":")[1])


def sigkill(pid: int) -> None:
    """SIGKILL, then make sure the process is dead (a zombie until its parent reaps it, or gone)."""
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        return state in ("Z", "X")  # a zombie: dead, not reaped yet

    wait_until(gone, 20, f"process {pid} to die")


def pool_children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def make_learner(client: TestClient, epochs: int = 1) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    body = {**TINY, "name": name, "hyperparameters": {"epochs": epochs}}
    r = client.post("/v1/learners", json=body, headers=auth())
    assert r.status_code == 201, r.text
    return name


def predict(client: TestClient, name: str) -> Any:
    x, _ = digits([0], per_class=2)
    return client.post(f"/v1/learners/{name}/predict", json={"images": x.tolist()}, headers=auth())


def versions_consistent(settings: Settings, name: str) -> list[ModelVersion]:
    """Every version row points at complete files whose sha256 matches, and no stray file or folder
    lies in the learner's versions folder (a half-written version or a .tmp). Returns the versions."""
    store = ArtifactStore(settings.artifacts)
    with session_scope(settings) as s:
        learner = s.scalar(select(Learner).where(Learner.name == name))
        assert learner is not None
        rows = list(s.scalars(select(ModelVersion).where(ModelVersion.learner_id == learner.id)))
        for row in rows:
            s.expunge(row)
        learner_id = learner.id
    expected = set()
    for v in rows:
        for uri, digest, size in (
            (v.checkpoint_uri, v.checkpoint_sha256, v.checkpoint_bytes),
            (v.classifier_uri, v.classifier_sha256, v.classifier_bytes),
        ):
            path = store.path(uri)
            assert path.is_file(), f"version {v.number} points at missing {uri}"
            assert path.stat().st_size == size and sha256_file(path) == digest, f"{uri} differs from its row"
            expected.add(uri)
    folder = store.path(f"learners/{learner_id}/versions")
    files = folder.rglob("*") if folder.exists() else []
    found = {str(p.relative_to(store.root)) for p in files if p.is_file()}
    assert found == expected, f"files without a version row: {sorted(found - expected)}"
    dirs = {p.name for p in folder.iterdir()} if folder.exists() else set()
    assert dirs == {store.path(v.checkpoint_uri).parent.name for v in rows}, f"stray folders: {dirs}"
    return sorted(rows, key=lambda v: v.number)


def versions_of_task(settings: Settings, job_id: int) -> int:
    with session_scope(settings) as s:
        task_id = s.scalar(select(Job.task_id).where(Job.id == job_id))
        return len(s.scalars(select(ModelVersion.id).where(ModelVersion.task_id == task_id)).all())


def task_ordinal(settings: Settings, job_id: int) -> int:
    with session_scope(settings) as s:
        return s.scalar(select(Task.ordinal).join(Job, Job.task_id == Task.id).where(Job.id == job_id))


# Where a fault test's job ran, for the README's reliability table (benchmarks/reliability.py).
WORKER_PROCESSES = (
    "real Celery worker processes (solo pool unless said), private redis-server, PostgreSQL; the API "
    "in-process (TestClient)"
)
IN_PROCESS = (
    "the job in-process (run_job) with a stand-in broker; the API in-process (TestClient), PostgreSQL"
)


def record(test: str, figures: dict[str, Any], settings: Settings, stack: str) -> None:
    """Add one test's observations, where they ran and under which settings, to $DGM_FAULTS_RESULTS
    (read-modify-write under a lock)."""
    target = os.environ.get("DGM_FAULTS_RESULTS")
    if not target:
        return
    sweep = (
        f"every {settings.sweep_interval_s:g} s" if settings.sweep_interval_s else "off (the test calls it)"
    )
    figures = {
        **figures,
        "stack": stack,
        "settings": {
            "lease_s": settings.lease_s,
            "sweeper": sweep,
            "progress_s": settings.progress_interval_s,
        },
    }
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[test] = figures
        path.write_text(json.dumps(data, indent=2, default=str))

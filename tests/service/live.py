"""A live HTTP server for tests that need real sockets (a browser, the CLI in a subprocess)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from core.settings import Settings
from service.app import create_app
from tests.service.support import TINY, auth, digits, npz_bytes, wait_job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """`create_app(settings)` under uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def train_learner(
    client: Any,
    name: str,
    tasks: list[list[int]],
    holdout: float = 0.25,
    hyperparameters: dict | None = None,
    per_class: int = 24,
) -> list[dict]:
    """Create a TINY learner (hyper-parameters over TINY's) and train one task per class list, in order,
    on per_class digits of each class; returns the finished jobs."""
    config = {**TINY, "name": name}
    config["hyperparameters"] = {**config["hyperparameters"], **(hyperparameters or {})}
    r = client.post("/v1/learners", json=config, headers=auth())
    assert r.status_code == 201, r.text
    jobs = []
    for classes in tasks:
        x, y = digits(classes, per_class)
        r = client.post(
            f"/v1/learners/{name}/tasks",
            files={"file": ("t.npz", npz_bytes(x=x, y=y))},
            data={"holdout": str(holdout)},
            headers=auth(),
        )
        assert r.status_code == 202, r.text
        jobs.append(wait_job(client, r.json()["job"]["id"]))
        assert jobs[-1]["state"] == "succeeded", jobs[-1]
    return jobs

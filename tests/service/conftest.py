"""The API against PostgreSQL (a fresh migrated schema) and a real Celery worker process on Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.service.support import ADMIN, REDIS, TINY, auth, pg_schema, start_worker, stop

MAX_UPLOAD = 2 * 2**20
MAX_UNPACKED = 16 * 2**20


@pytest.fixture(scope="session")
def pg_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data = tmp_path_factory.mktemp("pg-stack")
    with pg_schema() as url:
        yield Settings(
            data_dir=data,
            database_url=url,
            broker_url=f"{REDIS}/11",
            artifact_dir=data / "artifacts",
            queue=f"dgm-test-{uuid.uuid4().hex[:8]}",  # no other worker listens here
            admin_key=ADMIN,
            torch_threads=1,
            device="cpu",
            progress_interval_s=0.2,
            requeue_countdown_s=0.5,
            sweep_interval_s=0,
            max_upload_bytes=MAX_UPLOAD,
            max_uncompressed_bytes=MAX_UNPACKED,
        )


@pytest.fixture(scope="session")
def pg_worker(pg_settings: Settings) -> Iterator[None]:
    import redis

    proc = start_worker(pg_settings, pg_settings.data_dir / "worker.log")
    yield
    stop(proc)
    redis.Redis.from_url(pg_settings.broker_url).delete(pg_settings.queue)  # leave no stray messages


@pytest.fixture(scope="session")
def client(pg_settings: Settings, pg_worker: None) -> Iterator[TestClient]:
    with TestClient(create_app(pg_settings)) as c:
        yield c


@pytest.fixture
def make_learner(client: TestClient):
    def make(**changes) -> str:
        name = f"l-{uuid.uuid4().hex[:8]}"
        r = client.post("/v1/learners", json={**TINY, "name": name, **changes}, headers=auth())
        assert r.status_code == 201, r.text
        return name

    return make


@pytest.fixture(scope="session")
def trained(client: TestClient) -> str:
    """A learner that has learned digits 0 and 1 (version 1)."""
    from tests.service.support import learned

    return learned(client, "trained", [0, 1])

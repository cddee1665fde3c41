"""The in-process app and settings on a fresh SQLite database that the job tests share; for the fault
tests (test_faults_*.py), a private redis-server and a PostgreSQL stack per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.db import upgrade
from core.settings import Settings
from service.app import create_app
from tests.service.support import ADMIN
from tests.worker.faults_support import RedisServer, Stack, fault_stack, redis_server


@pytest.fixture
def settings(tmp_path) -> Settings:
    s = Settings(
        data_dir=tmp_path, admin_key=ADMIN, torch_threads=1, device="cpu", progress_interval_s=0,
        sweep_interval_s=0, requeue_countdown_s=7, stuck_after_s=60,
    )  # fmt: skip
    upgrade(s.database_url)
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def module_tag(request: pytest.FixtureRequest) -> str:
    """'infra' for test_faults_infra.py: names the module's temporary folders."""
    return request.module.__name__.rsplit("_", 1)[-1]


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server (never the shared 6379) for one fault-test module."""
    with redis_server(tmp_path_factory.mktemp(f"redis-{module_tag(request)}")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, broker: RedisServer
) -> Iterator[Stack]:
    """A fresh migrated PostgreSQL schema, a private queue on `broker`, and the API on them."""
    with fault_stack(tmp_path_factory.mktemp(f"faults-{module_tag(request)}"), broker.url) as pair:
        yield pair

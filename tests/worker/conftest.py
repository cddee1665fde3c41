"""The in-process app and settings on a fresh SQLite database that the job tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.db import upgrade
from core.settings import Settings
from service.app import create_app
from tests.service.support import ADMIN


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

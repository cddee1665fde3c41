"""Alembic: upgrade to head on empty SQLite and PostgreSQL, downgrade to base, upgrade again."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from core.db import downgrade, upgrade
from core.orm import Base
from tests.service.support import PG_SERVER

TABLES = set(Base.metadata.tables)


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        names = set(sa.inspect(c).get_table_names())
    engine.dispose()
    return names - {"alembic_version"}


def roundtrip(url: str) -> None:
    upgrade(url)
    assert tables(url) == TABLES
    downgrade(url, "base")
    assert tables(url) == set()
    upgrade(url)
    assert tables(url) == TABLES


def test_migrations_roundtrip_sqlite(tmp_path):
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.fixture
def pg_url():
    name = f"dgm_mig_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(PG_SERVER)
    with engine.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {name}"))
    yield f"{PG_SERVER}?options=-csearch_path%3D{name}"
    with engine.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
    engine.dispose()


def test_migrations_roundtrip_postgresql(pg_url):
    roundtrip(pg_url)


def test_migrations_match_the_orm(tmp_path):
    """The migrated schema has every column the ORM declares (no drift)."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as c:
        insp = sa.inspect(c)
        for name, table in Base.metadata.tables.items():
            assert {col["name"] for col in insp.get_columns(name)} == set(table.columns.keys()), name
    engine.dispose()

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


def seed_0001(url: str) -> None:
    """At revision 0001: a learner, its task and job, and a version that is active (the FK cycle)."""
    now = "2026-11-25 00:00:00+00:00"
    rows = [
        "INSERT INTO learners (id, name, image_shape, variant, preset, config, created_at) "
        f"VALUES (1, 'old', '[1, 8, 8]', 'dgmw', 'tiny', '{{}}', '{now}')",
        "INSERT INTO tasks (id, learner_id, ordinal, state, classes, class_counts, n_train, n_holdout, "
        f"source, created_at) VALUES (1, 1, 1, 'trained', '[\"a\", \"b\"]', '{{}}', 48, 0, 't.npz', '{now}')",
        "INSERT INTO jobs (id, task_id, learner_id, state, attempts, cancel_requested, created_at) "
        f"VALUES (1, 1, 1, 'succeeded', 1, false, '{now}')",
        "INSERT INTO model_versions (id, learner_id, number, task_id, classes, checkpoint_uri, "
        "checkpoint_sha256, checkpoint_bytes, classifier_uri, classifier_sha256, classifier_bytes, "
        "parameters, widths, mask_usage, units_added, report, train_seconds, active, created_at) VALUES "
        "(1, 1, 1, 1, '[\"a\", \"b\"]', 'c', 'x', 1, 'k', 'y', 1, 10, '{}', '{}', '{}', '{}', 1.5, true, "
        f"'{now}')",
        "UPDATE learners SET active_version_id = 1",
    ]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        for sql in rows:
            c.execute(sa.text(sql))
    engine.dispose()


def read_one(url: str, sql: str) -> tuple:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        row = c.execute(sa.text(sql)).one()
    engine.dispose()
    return tuple(row)


def fidelity_roundtrip(url: str) -> None:
    """0002 adds version fidelity and job warnings as NULL to existing rows and drops them again."""
    upgrade(url, "0001")
    seed_0001(url)
    upgrade(url)
    assert read_one(url, "SELECT fidelity FROM model_versions WHERE id = 1") == (None,)
    assert read_one(url, "SELECT warnings, state FROM jobs WHERE id = 1") == (None, "succeeded")
    downgrade(url, "0001")
    assert read_one(url, "SELECT number, active FROM model_versions WHERE id = 1") == (1, True)
    assert read_one(url, "SELECT active_version_id FROM learners WHERE id = 1") == (1,)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        assert "fidelity" not in {col["name"] for col in sa.inspect(c).get_columns("model_versions")}
        assert "warnings" not in {col["name"] for col in sa.inspect(c).get_columns("jobs")}
    engine.dispose()
    upgrade(url)


def test_migrations_fidelity_keeps_old_rows_sqlite(tmp_path):
    fidelity_roundtrip(f"sqlite:///{tmp_path / 'f.db'}")


def test_migrations_fidelity_keeps_old_rows_postgresql(pg_url):
    fidelity_roundtrip(pg_url)


def active_roundtrip(url: str) -> None:
    """0005 drops model_versions.active (the learner's active_version_id says it); downgrading sets the
    flag again on exactly the version that active_version_id names, and on no other."""
    upgrade(url, "0001")
    seed_0001(url)
    second = (
        "INSERT INTO model_versions (id, learner_id, number, task_id, classes, checkpoint_uri, "
        "checkpoint_sha256, checkpoint_bytes, classifier_uri, classifier_sha256, classifier_bytes, "
        "parameters, widths, mask_usage, units_added, report, train_seconds, active, created_at) "
        "SELECT 2, learner_id, 2, task_id, classes, checkpoint_uri, checkpoint_sha256, checkpoint_bytes, "
        "classifier_uri, classifier_sha256, classifier_bytes, parameters, widths, mask_usage, units_added, "
        "report, train_seconds, false, created_at FROM model_versions WHERE id = 1"
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        c.execute(sa.text(second))
    engine.dispose()
    upgrade(url)
    assert read_one(url, "SELECT active_version_id FROM learners WHERE id = 1") == (1,)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        assert "active" not in {col["name"] for col in sa.inspect(c).get_columns("model_versions")}
    engine.dispose()
    downgrade(url, "0004")
    assert read_one(url, "SELECT count(*) FROM model_versions WHERE active") == (1,)
    assert read_one(url, "SELECT id FROM model_versions WHERE active") == (1,)
    upgrade(url)


def test_migrations_active_flag_derived_sqlite(tmp_path):
    active_roundtrip(f"sqlite:///{tmp_path / 'a.db'}")


def test_migrations_active_flag_derived_postgresql(pg_url):
    active_roundtrip(pg_url)


def max_to_new_roundtrip(url: str) -> None:
    """0006 adds learners.gate_max_task_drop and gate_max_to_new: an existing learner gets the defaults
    0.4 and 0.5 and keeps its other gate settings; downgrading drops the columns and keeps the learner."""
    upgrade(url, "0001")
    seed_0001(url)
    upgrade(url, "0005")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE learners SET gate_max_drop = 0.03, gate_min_fidelity = 0.7 WHERE id = 1"))
    engine.dispose()
    upgrade(url)
    columns = "gate_max_drop, gate_min_fidelity, gate_max_task_drop, gate_max_to_new"
    assert read_one(url, f"SELECT {columns} FROM learners WHERE id = 1") == (0.03, 0.7, 0.4, 0.5)
    downgrade(url, "0005")
    assert read_one(url, "SELECT gate_max_drop, gate_min_fidelity FROM learners WHERE id = 1") == (0.03, 0.7)
    upgrade(url)


def test_migrations_gate_max_to_new_sqlite(tmp_path):
    max_to_new_roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_migrations_gate_max_to_new_postgresql(pg_url):
    max_to_new_roundtrip(pg_url)

"""The Alembic migrations create exactly the tables the models describe, on SQLite and Postgres."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

pytestmark = pytest.mark.timeout(60)


def test_migrated_schema_matches_the_models(settings):
    from alembic.script import ScriptDirectory

    from sikd_service.db import alembic_config, get_engine
    from sikd_service.tables import Base

    with get_engine(settings).connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
        assert compare_metadata(ctx, Base.metadata) == []


def test_downgrade_and_upgrade_again(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, get_engine, upgrade_database

    s = Settings(storage_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(s)
    upgrade_database(s)  # idempotent
    assert "stages" in inspect(get_engine(s)).get_table_names()
    command.downgrade(alembic_config(s), "base")
    assert inspect(get_engine(s)).get_table_names() == ["alembic_version"]
    upgrade_database(s)
    assert {"users", "datasets", "experiments", "stages", "epoch_metrics", "models"} <= set(
        inspect(get_engine(s)).get_table_names())
    assert "health" in {c["name"] for c in inspect(get_engine(s)).get_columns("stages")}


def test_stage_health_migration_fills_existing_rows(tmp_path):
    """Stages created before 0002 get an empty findings list, and 0002 downgrades cleanly."""
    from alembic import command
    from sqlalchemy import inspect, text

    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, get_engine

    s = Settings(storage_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'h.db'}")
    cfg = alembic_config(s)
    command.upgrade(cfg, "0001")
    with get_engine(s).begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, is_admin, created_at) VALUES (1, 'u', 1, '2026-01-01')"))
        conn.execute(text("INSERT INTO experiments (id, owner_id, name, status, spec, created_at, cancel_requested, "
                          "eval_enqueued) VALUES (1, 1, 'e', 'queued', '{}', '2026-01-01', 0, 0)"))
        conn.execute(text("INSERT INTO stages (id, experiment_id, kind, seed, status, progress, epoch, epochs, "
                          "attempts, warnings) VALUES (1, 1, 'baseline', 0, 'queued', 0, 0, 1, 0, '[]')"))
    command.upgrade(cfg, "head")
    with get_engine(s).connect() as conn:
        assert conn.execute(text("SELECT health FROM stages WHERE id = 1")).scalar_one() == "[]"
    command.downgrade(cfg, "0001")
    assert "health" not in {c["name"] for c in inspect(get_engine(s)).get_columns("stages")}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bigint_ids_migration_keeps_rows(tmp_path, backend):
    """0005: ids and foreign keys become BIGINT on PostgreSQL (rows and links kept, sequences past 2^31);
    SQLite keeps ``INTEGER PRIMARY KEY AUTOINCREMENT`` (already 64-bit, never reused)."""
    from alembic import command
    from sqlalchemy import text

    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, dispose_engines, get_engine
    from tests.service_helpers import create_pg_database, drop_pg_database

    url = create_pg_database() if backend == "postgres" else f"sqlite:///{tmp_path / 'b.db'}"
    try:
        s = Settings(storage_dir=tmp_path, database_url=url)
        cfg = alembic_config(s)
        command.upgrade(cfg, "0004_experiment_summary")
        with get_engine(s).begin() as conn:
            conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('u', false, '2026-01-01')"))
            conn.execute(text("INSERT INTO experiments (owner_id, name, status, spec, created_at, cancel_requested, "
                              "eval_enqueued) VALUES (1, 'e', 'queued', '{}', '2026-01-01', false, false)"))
        command.upgrade(cfg, "head")
        big = 2**63 - 1
        with get_engine(s).begin() as conn:
            assert conn.execute(text("SELECT e.name, u.name FROM experiments e JOIN users u ON u.id = e.owner_id")
                                ).one() == ("e", "u")
            if backend == "postgres":
                types = conn.execute(text(
                    "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_schema = 'public' AND "
                    "column_name IN ('id', 'owner_id', 'user_id', 'experiment_id', 'stage_id', 'dataset_id')"
                )).scalars().all()
                assert types == ["bigint"]
                conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": 2**31 + 5})
            else:
                ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'experiments'")).scalar_one()
                assert "id INTEGER NOT NULL" in ddl and "AUTOINCREMENT" in ddl, ddl
            new_id = conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('v', false, "
                                       "'2026-01-01') RETURNING id")).scalar_one()
            assert new_id == (2**31 + 6 if backend == "postgres" else 2)
            conn.execute(text("INSERT INTO users (id, name, is_admin, created_at) VALUES (:n, 'w', false, "
                              "'2026-01-01')"), {"n": big})
            conn.execute(text("INSERT INTO experiments (owner_id, name, status, spec, created_at, cancel_requested, "
                              "eval_enqueued) VALUES (:n, 'f', 'queued', '{}', '2026-01-01', false, false)"), {"n": big})
            assert conn.execute(text("SELECT name FROM experiments WHERE owner_id = :n"), {"n": big}).scalar_one() == "f"
    finally:
        dispose_engines()
        if backend == "postgres":
            drop_pg_database(url)


def test_worker_devices_migration_keeps_rows_and_downgrades(tmp_path):
    """0009 adds worker_devices and step_timings and changes nothing else; downgrading drops exactly them."""
    from alembic import command
    from sqlalchemy import inspect, text

    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, get_engine

    s = Settings(storage_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'w.db'}")
    cfg = alembic_config(s)
    command.upgrade(cfg, "0008_spec_network")
    before = set(inspect(get_engine(s)).get_table_names())
    with get_engine(s).begin() as conn:
        conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('u', 0, '2026-01-01')"))
    command.upgrade(cfg, "0009_worker_devices")
    assert set(inspect(get_engine(s)).get_table_names()) == before | {"worker_devices", "step_timings"}
    with get_engine(s).begin() as conn:
        assert conn.execute(text("SELECT name FROM users")).scalar_one() == "u"
    command.downgrade(cfg, "0008_spec_network")
    assert set(inspect(get_engine(s)).get_table_names()) == before

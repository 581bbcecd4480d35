"""The Alembic migrations create exactly the tables the models describe, on SQLite and Postgres."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

pytestmark = pytest.mark.timeout(60)


def test_migrated_schema_matches_the_models(settings):
    from sikd_service.db import get_engine
    from sikd_service.tables import Base

    with get_engine(settings).connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == "0002"
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

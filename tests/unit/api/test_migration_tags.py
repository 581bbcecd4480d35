"""Migration 0006 (experiment tags and notes) on SQLite and PostgreSQL: existing experiments get no tags and no
note, the tag filter's GIN index exists on PostgreSQL and its query uses it, and the downgrade keeps the rows."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_tags_notes_migration_keeps_rows_and_indexes_the_tags(tmp_path, backend):
    from alembic import command
    from sqlalchemy import inspect, select, text
    from sqlalchemy.orm import Session

    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, dispose_engines, get_engine
    from sikd_service.finder import Filters, conditions
    from sikd_service.tables import Experiment, User
    from tests.service_helpers import create_pg_database, drop_pg_database

    url = create_pg_database() if backend == "postgres" else f"sqlite:///{tmp_path / 't.db'}"
    try:
        s = Settings(storage_dir=tmp_path, database_url=url)
        cfg = alembic_config(s)
        command.upgrade(cfg, "0005_bigint_ids")
        with get_engine(s).begin() as conn:
            conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('u', false, '2026-01-01')"))
            conn.execute(text("INSERT INTO experiments (owner_id, name, status, spec, created_at, cancel_requested, "
                              "eval_enqueued) VALUES (1, 'old', 'succeeded', '{\"model\": \"unet\"}', '2026-01-01', "
                              "false, false)"))
        command.upgrade(cfg, "0006_experiment_tags_notes")
        with get_engine(s).connect() as conn:  # 0006 alone: the old row gets no tags and no note
            row = conn.execute(text("SELECT name, tags, note FROM experiments")).one()
            assert (row[0], json.loads(row[1]) if isinstance(row[1], str) else row[1], row[2]) == ("old", [], None)
        command.upgrade(cfg, "head")  # the tables below are the newest schema's
        engine = get_engine(s)
        with Session(engine) as session:
            old = session.scalars(select(Experiment)).one()
            assert (old.name, old.tags, old.note, old.spec) == ("old", [], None, {"network": "unet"})  # 0008: renamed
            old.tags, old.note = ["kept"], "a note"
            session.add(Experiment(owner_id=1, name="new", status="queued", spec={}))  # the default: no tags
            session.commit()
            user = session.get(User, 1)
            found = session.scalars(select(Experiment.name).where(*conditions(session, user=user,
                                                                            f=Filters(tags=["kept"])))).all()
            assert found == ["old"]
            assert session.scalars(select(Experiment.tags).where(Experiment.name == "new")).one() == []
            if backend == "postgres":  # the tag filter's SQL is what the GIN index answers
                indexes = session.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'experiments'")
                                          ).scalars().all()
                assert any("gin" in d and "jsonb" in d for d in indexes), indexes
                session.execute(text("SET enable_seqscan = off"))
                admin = User(id=2, name="a", is_admin=True)  # sees every experiment: no owner_id condition
                q = select(Experiment.id).where(*conditions(session, user=admin, f=Filters(tags=["kept"])))
                plan = "\n".join(session.execute(text("EXPLAIN " + str(q.compile(
                    engine, compile_kwargs={"literal_binds": True})))).scalars())
                assert "ix_experiments_tags_gin" in plan, plan
        command.downgrade(cfg, "0005_bigint_ids")
        columns = {c["name"] for c in inspect(get_engine(s)).get_columns("experiments")}
        assert "tags" not in columns and "note" not in columns
        with get_engine(s).connect() as conn:
            assert conn.execute(text("SELECT name FROM experiments ORDER BY id")).scalars().all() == ["old", "new"]
        command.upgrade(cfg, "head")
    finally:
        dispose_engines()
        if backend == "postgres":
            drop_pg_database(url)

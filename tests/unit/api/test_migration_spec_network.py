"""Migration 0008 (the spec's ``model``/``model_kwargs`` renamed ``network``/``network_kwargs``) on SQLite and
PostgreSQL: every stored spec is rewritten under the new names (key order and values kept, in batches), the
network filter and the stage plan read them, and the downgrade writes the old names back."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(90)

OLD = {"name": "old", "train_dataset": "1", "model": "attention_unet", "model_kwargs": {"channels": [4, 8]},
       "image_size": [32, 32], "methods": ["baseline", "sikd"], "seeds": [0], "epochs": 2}
NEW = {"name": "old", "train_dataset": "1", "network": "attention_unet", "network_kwargs": {"channels": [4, 8]},
       "image_size": [32, 32], "methods": ["baseline", "sikd"], "seeds": [0], "epochs": 2}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_spec_network_migration_renames_every_stored_spec(tmp_path, backend):
    from alembic import command
    from sqlalchemy import JSON, BigInteger, column, insert, select, table, text
    from sqlalchemy.orm import Session

    from sikd_core.methods.plan import stored_stage_plan
    from sikd_service.config import Settings
    from sikd_service.db import alembic_config, dispose_engines, get_engine
    from sikd_service.finder import Filters, conditions
    from sikd_service.tables import Experiment, User
    from tests.service_helpers import create_pg_database, drop_pg_database

    url = create_pg_database() if backend == "postgres" else f"sqlite:///{tmp_path / 'n.db'}"
    experiments = table("experiments", column("id", BigInteger()), column("owner_id", BigInteger()),
                        column("name"), column("status"), column("spec", JSON()), column("created_at"),
                        column("cancel_requested"), column("eval_enqueued"))
    try:
        s = Settings(storage_dir=tmp_path, database_url=url)
        cfg = alembic_config(s)
        command.upgrade(cfg, "0007_stage_reuse")
        n = 503  # more than one batch of the migration (500)
        with get_engine(s).begin() as conn:
            conn.execute(text("INSERT INTO users (name, is_admin, created_at) VALUES ('u', false, '2026-01-01')"))
            conn.execute(insert(experiments), [
                {"owner_id": 1, "name": f"e{i}", "status": "succeeded", "created_at": "2026-01-01",
                 "cancel_requested": False, "eval_enqueued": False,
                 "spec": OLD if i in (0, n - 1) else {"model": "unet"} if i % 2 else {}} for i in range(n)])
        command.upgrade(cfg, "head")
        with Session(get_engine(s)) as session:
            specs = dict(session.execute(select(Experiment.name, Experiment.spec)).all())
            assert specs["e0"] == NEW and specs[f"e{n - 1}"] == NEW
            assert list(specs["e0"]) == list(NEW)  # the keys keep their order
            assert specs["e1"] == {"network": "unet"} and specs["e2"] == {}
            assert not any("model" in sp or "model_kwargs" in sp for sp in specs.values())
            user = session.get(User, 1)
            found = session.scalars(select(Experiment.name).where(*conditions(
                session, user=user, f=Filters(network="attention_unet"))).order_by(Experiment.id)).all()
            assert found == ["e0", f"e{n - 1}"]
            assert session.scalar(select(Experiment).where(*conditions(
                session, user=user, f=Filters(network="unet"))).limit(1)).spec == {"network": "unet"}
            plan = stored_stage_plan(specs["e0"])
            assert {p.network for p in plan} == {"attention_unet"} and len(plan) == 3
        command.downgrade(cfg, "0007_stage_reuse")
        with get_engine(s).connect() as conn:
            rows = dict(conn.execute(select(experiments.c.name, experiments.c.spec)).all())
            assert rows["e0"] == OLD and list(rows["e0"]) == list(OLD) and rows["e1"] == {"model": "unet"}
            assert rows["e2"] == {} and len(rows) == n
        command.upgrade(cfg, "head")
    finally:
        dispose_engines()
        if backend == "postgres":
            drop_pg_database(url)


def test_renamed_keeps_what_is_not_an_old_spec():
    """The migration's rename alone: non-dicts and specs without the old keys are returned as they are; a spec
    holding both names keeps the new one."""
    import importlib.util
    from pathlib import Path

    import sikd_service

    path = Path(sikd_service.__file__).parent / "migrations" / "versions" / "0008_spec_network.py"
    spec = importlib.util.spec_from_file_location("m0008", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.renamed(None, mod.RENAMED) is None and mod.renamed("x", mod.RENAMED) == "x"
    plain = {"network": "unet"}
    assert mod.renamed(plain, mod.RENAMED) is plain
    assert mod.renamed({"model": "a", "network": "b", "lr": 1}, mod.RENAMED) == {"network": "b", "lr": 1}

"""Engine, sessions and migrations.

SQLite (the default) is shared by the API and the worker processes: it runs in WAL mode with a busy
timeout, and pysqlite's default transaction handling is kept on purpose (SELECTs run outside a
transaction, ``BEGIN`` is issued before the first write), so a read-then-write never has to upgrade a
stale read lock, which SQLite refuses without waiting. Decisions that must be atomic are single
conditional UPDATEs (see :mod:`sikd_service.crud`), which behave the same on SQLite and Postgres.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from sikd_service.config import Settings

log = logging.getLogger("sikd.sikd_service.db")

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL and process (a forked worker child builds its own)."""
    url = settings.sqlalchemy_url
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1] if "///" in url else ""
                pool = {}
                if path and path != ":memory:":  # a file: a queue pool, sized like the Postgres one
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    pool = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=settings.db_pool_size,
                                       max_overflow=settings.db_max_overflow)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Forget every engine (at the end of tests; a forked child does it by itself, see below)."""
    with _lock:
        for (pid, _), engine in list(_engines.items()):
            engine.dispose(close=pid == os.getpid())
        _engines.clear()


def _after_fork_in_child() -> None:
    # A forked process (a Celery pool process) must not use its parent's connections, and the lock may
    # have been held by another thread of the parent at the moment of the fork: start afresh.
    global _lock
    _lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def session_factory(settings: Settings) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(settings), expire_on_commit=False)


@contextlib.contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (worker and scripts)."""
    with session_factory(settings)() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# ------------------------------------------------------------------------------------ migrations
def alembic_config(settings: Settings):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["sqlalchemy_url"] = settings.sqlalchemy_url
    return cfg


@contextlib.contextmanager
def _migration_lock(settings: Settings, engine: Engine) -> Iterator[None]:
    """Serialise concurrent upgrades (API and workers may start together)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727274)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727274)"))
                conn.commit()
        return
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.storage_dir / ".migrate.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def upgrade_database(settings: Settings) -> None:
    """Apply every Alembic migration not yet applied (idempotent)."""
    from alembic import command

    engine = get_engine(settings)
    with _migration_lock(settings, engine):
        command.upgrade(alembic_config(settings), "head")
    log.info("database at the latest migration: %s", engine.url.render_as_string(hide_password=True))

"""Helpers for the service tests: throw-away Postgres databases, zips, process trees, polling."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: The real services of the test machine (override with these variables elsewhere).
PG_ADMIN_URL = os.environ.get("SIKD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SIKD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_TOKEN = "test-admin-token-0123456789"


@contextlib.contextmanager
def count_queries(settings: Any) -> Iterator[list[str]]:
    """The SQL statements the process sends to ``settings``' database while the block runs."""
    from sqlalchemy import event

    from sikd_service.db import get_engine

    engine = get_engine(settings)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def create_pg_database() -> str:
    """A new, empty database on the test Postgres; returns its SQLAlchemy URL."""
    import psycopg

    name = unique("sikd_test")
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        pytest.fail(f"the tests need PostgreSQL at {PG_ADMIN_URL} (set SIKD_TEST_POSTGRES_URL): {e}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_pg_database(url: str) -> None:
    import psycopg

    from sikd_service.db import dispose_engines

    dispose_engines()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clear_tables(settings: Any) -> None:
    """Empty every table (ids restart) so each test starts from a clean database."""
    from sqlalchemy import text

    from sikd_service.db import get_engine
    from sikd_service.tables import Base

    engine = get_engine(settings)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_folder(folder: Path, top: str | None = None) -> bytes:
    """A zip of ``folder``'s files, inside one top-level folder ``top`` (or at the root)."""
    entries = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            entries[f"{top}/{rel}" if top else rel] = p.read_bytes()
    return zip_bytes(entries)


def png_bytes(array: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def kill_tree(proc: Any, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop ``proc`` and everything it started; SIGKILL whatever is left after ``timeout``."""
    pids = [proc.pid, *descendants(proc.pid)]
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except Exception:  # noqa: BLE001
        pass
    pids += descendants(proc.pid) if proc.poll() is None else []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.poll() is None:
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    assert not left, f"processes left behind: {left}"


# ---------------------------------------------------------------------------------------------- API
def new_user(client: Any, admin: dict[str, str], name: str | None = None, is_admin: bool = False) -> dict[str, str]:
    r = client.post("/users", json={"name": name or unique("user"), "is_admin": is_admin}, headers=admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def upload(client: Any, headers: dict[str, str], data: bytes, name: str = "data", filename: str = "data.zip") -> Any:
    return client.post("/datasets", files={"file": (filename, data, "application/zip")}, data={"name": name},
                       headers=headers)


def tiny_spec(datasets: dict[str, int], **kw: Any) -> dict[str, Any]:
    spec = dict(name="tiny", train_dataset=datasets["vendor_a"], eval_datasets=[datasets["vendor_b"]],
                network_kwargs={"widths": [4, 8, 16]}, image_size=32, epochs=2, batch_size=4, lr=5e-3, seeds=[0],
                device="cpu", feature_maps=1)
    spec.update(kw)
    return spec


def storage_listing(settings: Any) -> list[str]:
    """Everything under the storage root except the database and broker files."""
    root = Path(settings.storage_dir)
    skip = ("sikd.db", "broker", ".migrate.lock")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if not p.relative_to(root).as_posix().startswith(skip))


def drain(jobs: list, worker: str = "worker-1") -> list[tuple[str, tuple, Any]]:
    """Run recorded jobs in order, as a worker would (a chain's next task follows when one returns);
    jobs they enqueue are run too. Returns ``(task, args, outcome)``."""
    from sikd_service.celery_app import TASK_EVALUATE, TASK_REMOVE, TASK_TIME_STEPS, TASK_TRAIN
    from worker import tasks

    run = {TASK_TRAIN: lambda i: tasks.run_training_stage(i, worker=worker),
           TASK_EVALUATE: lambda i: tasks.run_evaluation_stage(i, worker=worker),
           TASK_TIME_STEPS: lambda i: tasks.run_step_timing(i, worker=worker),
           TASK_REMOVE: tasks.remove_paths}
    done = []
    while jobs:
        for name, args in jobs.pop(0):
            done.append((name, args, run[name](*args)))
    return done

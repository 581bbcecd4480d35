"""Settings: SIKD_-prefixed variables, plain DATABASE_URL / REDIS_URL, derived paths and URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sikd_service.config import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("DATABASE_URL", "REDIS_URL", "SIKD_DATABASE_URL", "SIKD_REDIS_URL", "SIKD_STORAGE_DIR",
                "SIKD_MAX_UPLOAD_BYTES"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_are_sqlite_and_the_embedded_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("SIKD_STORAGE_DIR", str(tmp_path / "st"))
    s = Settings()
    assert s.storage_dir == (tmp_path / "st").resolve()
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'st' / 'sikd.db'}"
    assert s.embedded_broker and s.broker_dir == s.storage_dir / "broker"
    assert s.visibility_timeout_seconds == 12 * 3600


def test_plain_and_prefixed_urls(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/sikd")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    s = Settings()
    assert s.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/sikd"
    assert s.redis_url == "redis://cache:6379/1" and not s.embedded_broker
    monkeypatch.setenv("SIKD_DATABASE_URL", "postgresql://x@y/z")
    assert Settings().sqlalchemy_url == "postgresql+psycopg://x@y/z"
    monkeypatch.setenv("SIKD_MAX_UPLOAD_BYTES", "1234")
    assert Settings().max_upload_bytes == 1234


def test_names_are_checked():
    with pytest.raises(ValidationError, match="letters, digits"):
        Settings(train_queue="train queue")
    assert Settings(storage_dir=Path("rel")).storage_dir.is_absolute()


def test_reconfiguring_celery_replaces_broker_queues_and_control_exchange(tmp_path):
    from sikd_service.celery_app import app, configure

    a = Settings(storage_dir=tmp_path / "a", celery_namespace="ns-a", train_queue="ta")
    b = Settings(storage_dir=tmp_path / "b", celery_namespace="ns-b", train_queue="tb",
                 redis_url="redis://127.0.0.1:6379/0")
    configure(a)
    assert app.control.mailbox.namespace == "ns-a" and "ta" in app.amqp.queues
    assert app.conf.broker_transport_options["data_folder_in"] == str(a.broker_dir / "queue")
    configure(b)
    assert app.control.mailbox.namespace == "ns-b" and "tb" in app.amqp.queues and "ta" not in app.amqp.queues
    assert app.conf.broker_url == b.redis_url and app.conf.broker_transport is None
    assert app.conf.broker_transport_options == {"visibility_timeout": 12 * 3600, "global_keyprefix": "ns-b:"}
    assert app.amqp.router.route({}, "sikd.evaluate")["queue"].name == "tb"

"""Workers' devices and step timings measured on them

``worker_devices``: the device each worker trains on (CUDA GPU or CPU, its memory, cores and threads, PyTorch's
version, its host), reported at the worker's start and refreshed while it runs (``last_seen``); the API plans for
the most capable live one without loading PyTorch. ``step_timings``: training steps of one configuration timed on a
worker (a Celery task), keyed by the configuration's digest and reused by every plan and estimate.
Nothing existing changes.

Revision ID: 0009_worker_devices
Revises: 0008_spec_network
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_worker_devices'
down_revision: str | None = '0008_spec_network'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('worker_devices',
    sa.Column('id', _ID, nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('memory_gib', sa.Float(), nullable=True),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('cpu_cores', sa.Integer(), nullable=False),
    sa.Column('cpu_threads', sa.Integer(), nullable=False),
    sa.Column('torch_version', sa.String(length=50), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('worker'),
    sqlite_autoincrement=True,
    )
    op.create_table('step_timings',
    sa.Column('id', _ID, nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('network', sa.String(length=100), nullable=False),
    sa.Column('network_kwargs', sa.JSON(), nullable=False),
    sa.Column('in_channels', sa.Integer(), nullable=False),
    sa.Column('num_classes', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('device_kind', sa.String(length=10), nullable=True),
    sa.Column('device_name', sa.String(length=200), nullable=True),
    sa.Column('step_seconds', sa.Float(), nullable=True),
    sa.Column('student_step_seconds', sa.Float(), nullable=True),
    sa.Column('forward_seconds', sa.Float(), nullable=True),
    sa.Column('peak_gib', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table('step_timings')
    op.drop_table('worker_devices')

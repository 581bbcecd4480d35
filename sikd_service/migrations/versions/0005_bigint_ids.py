"""64-bit ids on PostgreSQL: every primary key, every foreign key to one, and their sequences become BIGINT

The API accepts ids up to 2^63-1 (the bound it documents), but 0001 made them INTEGER: on PostgreSQL an id
from 2^31 on reached the database as ``$1::INTEGER`` and failed with NumericValueOutOfRange (a 500), and the
sequences would have run out at 2^31-1. ``ALTER COLUMN ... TYPE BIGINT`` rewrites each table keeping its rows
and its constraints (int4 -> int8 is a widening cast; the foreign keys are re-checked, not dropped). SQLite is
left alone: its INTEGER is already 64-bit, and ``INTEGER PRIMARY KEY AUTOINCREMENT`` (0003) must stay INTEGER.

Revision ID: 0005_bigint_ids
Revises: 0004_experiment_summary
Create Date: 2026-12-03 05:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_bigint_ids'
down_revision: str | None = '0004_experiment_summary'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, id columns): the primary key first, then the foreign keys to other tables' ids.
COLUMNS = (
    ("users", ("id",)),
    ("api_tokens", ("id", "user_id")),
    ("datasets", ("id", "owner_id")),
    ("experiments", ("id", "owner_id")),
    ("experiment_datasets", ("experiment_id", "dataset_id")),
    ("stages", ("id", "experiment_id")),
    ("epoch_metrics", ("id", "stage_id")),
    ("models", ("id", "owner_id", "experiment_id", "stage_id")),
)


def _retype(new: sa.types.TypeEngine, old: sa.types.TypeEngine, seq_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS:
        for column in columns:
            op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)
        if "id" in columns:
            seq = op.get_bind().execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
            if seq:  # SERIAL's sequence was made AS integer: its maximum follows the new type
                op.execute(f"ALTER SEQUENCE {seq} AS {seq_type}")


def upgrade() -> None:
    _retype(sa.BigInteger(), sa.Integer(), "bigint")


def downgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger(), "integer")

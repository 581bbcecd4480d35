"""Experiment tags and notes: a JSON list of labels and a free-text note per experiment, so experiments can be
found again (``GET /experiments?tag=``) and say what they were for

Existing rows get no tags (``[]``) and no note. On PostgreSQL the tags get a GIN index on their ``jsonb`` form,
which ``tags::jsonb @> '["x"]'`` (the tag filter there) uses; SQLite has no such index, and its tag filter
scans the caller's experiments (found through the ``owner_id`` index).

Revision ID: 0006_experiment_tags_notes
Revises: 0005_bigint_ids
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_experiment_tags_notes'
down_revision: str | None = '0005_bigint_ids'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The GIN index of the tags (PostgreSQL only: the models declare it with ``ddl_if``).
TAGS_INDEX = "ix_experiments_tags_gin"


def upgrade() -> None:
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {TAGS_INDEX} ON experiments USING gin ((tags::jsonb))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {TAGS_INDEX}")
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('tags')

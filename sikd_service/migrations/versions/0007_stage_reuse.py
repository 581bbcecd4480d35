"""Stage reuse and sweeps: a stage's key, where a reused stage came from, what a stage waits for; a dataset's
content fingerprint; an experiment's sweep

``stages.reuse_key`` identifies a finished stage (sikd_core.methods.plan.stage_key); ``reused_from`` is the
experiment a reused stage's model came from (kept when that experiment is deleted: it is history, not a link);
``reuse_wait`` is the stage id an identical stage still training elsewhere, which this one waits for.
``datasets.content_hash`` is the fingerprint of the dataset's files (computed once, on first use).
``experiments.sweep_id`` groups the experiments one sweep request created (the id of its first one); ``sweep_values`` is each one's setting.
Existing rows get nulls: their stages have no key and are never reused (nothing is recomputed).

Revision ID: 0007_stage_reuse
Revises: 0006_experiment_tags_notes
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_stage_reuse'
down_revision: str | None = '0006_experiment_tags_notes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('stages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reuse_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('reused_from', _ID, nullable=True))
        batch_op.add_column(sa.Column('reuse_wait', _ID, nullable=True))
        batch_op.create_index('ix_stages_reuse_key', ['reuse_key'], unique=False)
        batch_op.create_index('ix_stages_reuse_wait', ['reuse_wait'], unique=False)
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=64), nullable=True))
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', _ID, nullable=True))
        batch_op.add_column(sa.Column('sweep_values', sa.JSON(), nullable=True))
        batch_op.create_index('ix_experiments_sweep_id', ['sweep_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_index('ix_experiments_sweep_id')
        batch_op.drop_column('sweep_values')
        batch_op.drop_column('sweep_id')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('content_hash')
    with op.batch_alter_table('stages', schema=None) as batch_op:
        batch_op.drop_index('ix_stages_reuse_wait')
        batch_op.drop_index('ix_stages_reuse_key')
        batch_op.drop_column('reuse_wait')
        batch_op.drop_column('reused_from')
        batch_op.drop_column('reuse_key')

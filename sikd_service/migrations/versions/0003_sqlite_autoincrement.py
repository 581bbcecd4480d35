"""SQLite: ids are never reused (AUTOINCREMENT), so a link to a deleted object cannot reach a new one

Without AUTOINCREMENT SQLite hands out max(id) + 1, so deleting the newest experiment (or dataset, model,
user) gives its id to the next one: old links, bookmarks and queued stage ids would then point at the new
object. PostgreSQL sequences never reuse ids; nothing changes there. The tables are copied (batch mode);
the migration runs without foreign-key enforcement (Alembic's own connection), so no cascade fires.

Revision ID: 0003
Revises: 0002_stage_health
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002_stage_health'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every table with an integer id, parents before children.
TABLES = ("users", "api_tokens", "datasets", "experiments", "stages", "epoch_metrics", "models")


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)

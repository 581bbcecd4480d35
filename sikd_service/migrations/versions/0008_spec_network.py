"""The experiment spec's ``model`` and ``model_kwargs`` are called ``network`` and ``network_kwargs``: every stored
spec is rewritten under the new names

"model" named the architecture; it means a trained model now (sikd_core.spec.RENAMED_KEYS). The spec JSON of
every experiment is rewritten in place, keys in their order, values untouched; the filters (``GET
/experiments?network=``) and the stage plans read the new names. Stage keys are unchanged (they hash the settings
under their old names), so stages trained before are still reused. The downgrade writes the old names back.

Revision ID: 0008_spec_network
Revises: 0007_stage_reuse
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0008_spec_network'
down_revision: str | None = '0007_stage_reuse'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Old name -> new name, as of this migration (fixed here: a later rename is a later migration).
RENAMED = {"model": "network", "model_kwargs": "network_kwargs"}
#: Rows read and written per round trip.
BATCH = 500

_experiments = sa.table("experiments", sa.column("id", sa.BigInteger()), sa.column("spec", sa.JSON()))


def renamed(spec: Any, names: dict[str, str]) -> Any:
    """``spec`` with each key of ``names`` under its new name, in place in the key order; where both names are
    present (never written by the service) the new one is kept. Anything but a dict is returned as it is."""
    if not isinstance(spec, dict) or not any(k in spec for k in names):
        return spec
    return {names.get(k, k): v for k, v in spec.items() if not (k in names and names[k] in spec)}


def _rewrite(names: dict[str, str]) -> None:
    bind = op.get_bind()
    last = None
    while True:
        q = sa.select(_experiments.c.id, _experiments.c.spec).order_by(_experiments.c.id).limit(BATCH)
        rows = bind.execute(q if last is None else q.where(_experiments.c.id > last)).all()
        for row_id, spec in rows:
            new = renamed(spec, names)
            if new is not spec:
                bind.execute(sa.update(_experiments).where(_experiments.c.id == row_id).values(spec=new))
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def upgrade() -> None:
    _rewrite(RENAMED)


def downgrade() -> None:
    _rewrite({new: old for old, new in RENAMED.items()})

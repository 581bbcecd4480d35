"""Finding experiments again: their tags and note, and the Experiments list's search and filters.

The filters are SQL, on SQLite and PostgreSQL alike: the name (a case-insensitive substring), the tags (every
one given), a dataset (trained or evaluated on), the network and a method of the spec, the status. Tags and
the spec's methods are JSON lists: PostgreSQL tests them with ``@>`` on their ``jsonb`` form (the tags through
their GIN index, migration 0006), SQLite with ``json_each``. Health is not a column: :func:`unhealthy` states
in SQL what :func:`sikd_service.health.experiment_health` makes of the stored findings (the report's, kept in the
row's ``summary``, once evaluated; else those the stages recorded), and a test holds the two to the same answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, selectinload

from sikd_service.names import name_problem
from sikd_service.tables import Experiment, ExperimentDataset, Stage, User

#: At most this many tags per experiment, each of 1 to :data:`TAG_LENGTH` characters; a note of at most
#: :data:`NOTE_LENGTH` characters.
MAX_TAGS = 20
TAG_LENGTH = 40
NOTE_LENGTH = 5000


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` (already stripped) is not an acceptable tag, or None. Commas separate tags in the dashboard's
    box, so a tag cannot hold one; otherwise the rules of display names (no control characters, no ``<``)."""
    problem = name_problem(tag, what="tag", max_length=TAG_LENGTH)
    if problem:
        return f"{problem} (tag {tag[:60]!r})"
    if "," in tag:
        return f"a tag cannot hold a comma (tag {tag!r}): give each tag as its own list item"
    return None


def clean_tags(tags: Sequence[str]) -> list[str]:
    """The tags stripped of surrounding spaces, the repeats dropped (first kept), in the order given; raises
    ValueError naming every bad tag, or too many."""
    out = list(dict.fromkeys(t.strip() for t in tags))
    problems = [p for t in out if (p := tag_problem(t))]
    if problems:
        raise ValueError("; ".join(problems))
    if len(out) > MAX_TAGS:
        raise ValueError(f"an experiment has at most {MAX_TAGS} tags; {len(out)} were given")
    return out


def clean_note(note: str | None) -> str | None:
    """The note with its surrounding whitespace stripped (None when nothing is left); raises ValueError when it
    is too long or holds control characters other than newlines and tabs."""
    if note is None or not note.strip():
        return None
    note = note.strip()
    if len(note) > NOTE_LENGTH:
        raise ValueError(f"the note must have at most {NOTE_LENGTH} characters; it has {len(note)}")
    bad = sorted({c for c in note if c not in "\n\t" and name_problem(c, what="note") is not None})
    if bad:
        raise ValueError("the note holds characters that are not allowed ("
                         + ", ".join(f"U+{ord(c):04X}" for c in bad) + "): use text, newlines and tabs")
    return note


def set_meta(session: Session, exp: Experiment, *, tags: list[str] | None = None, note: str | None = None,
             set_note: bool = False) -> Experiment:
    """Replace the experiment's tags (when given) and its note (when ``set_note``); commits."""
    if tags is not None:
        exp.tags = list(tags)
    if set_note:
        exp.note = note
    session.commit()
    return exp


def user_tags(session: Session, *, user: User) -> list[tuple[str, int]]:
    """Every tag on the experiments the user sees, with how many carry it (most used first, then by name)."""
    counts: dict[str, int] = {}
    for tags in session.scalars(select(Experiment.tags).where(_visible(user))):
        for t in tags or []:
            counts[str(t)] = counts.get(str(t), 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].lower(), kv[0]))


@dataclass
class Filters:
    """What the Experiments list is narrowed to (None / empty: no filter on that)."""

    status: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    dataset: int | None = None
    network: str | None = None
    method: str | None = None
    health: str | None = None


def _visible(user: User) -> Any:
    return literal(True) if user.is_admin else Experiment.owner_id == user.id


def _json_list_has(session: Session, column: Any, value: str, path: str | None = None) -> Any:
    """SQL: the JSON list ``column`` (or its member ``path``, a top-level key) holds the string ``value``."""
    if session.get_bind().dialect.name == "postgresql":
        doc = cast(column, JSONB)
        return (doc[path] if path else doc).op("@>")(cast(literal(json.dumps([value])), JSONB))
    each = (func.json_each(column, f"$.{path}") if path else func.json_each(column)).table_valued("value")
    return select(literal(1)).select_from(each).where(each.c.value == value).exists()


def _json_array_length(session: Session, doc: Any, path: str | None = None) -> Any:
    """SQL: the length of the JSON array ``doc`` (or of its member at ``path``, keys joined by dots); 0 for
    anything that is not an array (null, missing)."""
    if session.get_bind().dialect.name == "postgresql":
        for key in (path.split(".") if path else []):
            doc = doc.op("->")(literal(key))
        return case((func.json_typeof(doc) == "array", func.json_array_length(doc)), else_=0)
    return func.coalesce(func.json_array_length(doc, f"$.{path}") if path else func.json_array_length(doc), 0)


def _is_object(session: Session, doc: Any, key: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.coalesce(func.json_typeof(doc.op("->")(literal(key))) == "object", False)
    return func.coalesce(func.json_type(doc, f"$.{key}") == "object", False)


def unhealthy(session: Session) -> Any:
    """SQL: the experiment has a training-health finding, as :func:`~sikd_service.health.experiment_health` reads
    them: the report's findings (``summary.health``) once it has them, else any finding of a stage."""
    reported = _is_object(session, Experiment.summary, "health")
    staged = select(literal(1)).where(Stage.experiment_id == Experiment.id,
                                      _json_array_length(session, Stage.health) > 0).exists()
    return or_(and_(reported, _json_array_length(session, Experiment.summary, "health.findings") > 0),
               and_(~reported, staged))


def conditions(session: Session, *, user: User, f: Filters) -> list[Any]:
    """The SQL conditions of ``f`` for the experiments ``user`` sees."""
    cond = [_visible(user)]
    if f.status:
        cond.append(Experiment.status == f.status)
    if f.name:
        cond.append(Experiment.name.icontains(f.name, autoescape=True))
    for tag in f.tags:
        cond.append(_json_list_has(session, Experiment.tags, tag))
    if f.dataset is not None:
        cond.append(select(literal(1)).where(ExperimentDataset.experiment_id == Experiment.id,
                                             ExperimentDataset.dataset_id == f.dataset).exists())
    if f.network:
        cond.append(Experiment.spec["network"].as_string() == f.network)  # rows before 0008 are migrated
    if f.method:
        cond.append(_json_list_has(session, Experiment.spec, f.method, path="methods"))
    if f.health:
        cond.append(unhealthy(session) if f.health == "unhealthy" else ~unhealthy(session))
    return cond


def find_experiments(session: Session, *, user: User, f: Filters, skip: int,
                     limit: int) -> tuple[list[Experiment], int]:
    """The experiments matching ``f``, newest first, with their stages: one page and the count of all."""
    cond = conditions(session, user=user, f=f)
    count = session.scalar(select(func.count()).select_from(Experiment).where(*cond)) or 0
    q = (select(Experiment).where(*cond).options(selectinload(Experiment.stages)).order_by(Experiment.id.desc())
         .offset(skip).limit(limit))
    return list(session.scalars(q)), count

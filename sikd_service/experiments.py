"""Experiment operations: validate and enqueue, cancel, delete, and read what the pipeline wrote.

The API never trains: it stores the experiment with its stages, commits, and then sends the stage ids
to the ``train`` queue. Results, overlays and feature maps are files the evaluation stage wrote under
``<storage>/experiments/<id>/`` (``report.json``, ``report.md``, ``eval/``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from sikd_core.methods.plan import is_student_stage
from sikd_core.spec import ExperimentSpec, parse_spec
from sikd_service import crud, dispatch, reuse
from sikd_service.config import Settings
from sikd_service.errors import ServiceError
from sikd_service.health import stored_health
from sikd_service.names import name_problem
from sikd_service.storage import experiment_dir
from sikd_service.tables import ACTIVE_EXPERIMENT, Dataset, Experiment, User

log = logging.getLogger("sikd.sikd_service.experiments")


#: A dataset id as sent: ASCII digits without a leading zero, sign or space, within 64 bits.
_ID = re.compile(r"[1-9][0-9]{0,18}")


def _field_error(detail: str, fields: dict[str, str], **extra: Any) -> ServiceError:
    """A 422 whose ``errors`` name the spec fields it is about (``{field: message}``), as a spec error's do."""
    errors = [{"loc": ["body", f], "msg": msg, "type": "value_error"} for f, msg in fields.items()]
    return ServiceError(422, detail, errors=errors, **extra)


def _split_keys(keys: list[str], train: list[str], what: str) -> dict[str, str]:
    """``{field: message}`` for the dataset keys among the training and the cross datasets."""
    out = {}
    for field, mine in (("train_dataset", [k for k in keys if k in train]),
                        ("eval_datasets", [k for k in keys if k not in train])):
        if mine:
            out[field] = what + ", ".join(mine)
    return out


def datasets_of(session: Session, *, user: User, spec: ExperimentSpec) -> dict[str, Dataset]:
    """The spec's datasets by key (ids the user may read, of the same classes), else a 422 naming the field."""
    keys = [*spec.train_datasets, *spec.eval_datasets]
    bad = [k for k in keys if not (_ID.fullmatch(k) and int(k) <= 2**63 - 1)]
    if bad:
        raise _field_error("datasets are given by id (see GET /datasets); not an id: " + ", ".join(map(repr, bad)),
                           _split_keys(bad, spec.train_datasets, "not a dataset id: "), datasets=bad)
    ids = {k: int(k) for k in keys}
    if len(set(ids.values())) != len(ids):
        raise _field_error("a dataset id appears twice among train_dataset and eval_datasets",
                           {"eval_datasets": "a dataset id appears twice among the training and the cross datasets"},
                           datasets=keys)
    found: dict[str, Dataset] = {}
    for key, ds_id in ids.items():
        ds = crud.get_dataset(session, user=user, dataset_id=ds_id)
        if ds is not None:
            found[key] = ds
    missing = [k for k in keys if k not in found]
    if missing:
        raise _field_error("unknown dataset id(s): " + ", ".join(missing),
                           _split_keys(missing, spec.train_datasets, "unknown dataset id(s): "), datasets=missing)
    train = found[spec.train_datasets[0]]
    mismatch = [found[k] for k in [*spec.train_datasets[1:], *spec.eval_datasets]
                if found[k].num_classes != train.num_classes]
    if mismatch:
        detail = (f"the training dataset {train.id} ({train.name!r}) has {train.num_classes} classes "
                  f"({', '.join(train.class_names)}), but " + "; ".join(
                      f"dataset {d.id} ({d.name!r}) has {d.num_classes} ({', '.join(d.class_names)})"
                      for d in mismatch) + ": cross-dataset evaluation needs the same classes")
        fields = _split_keys([str(d.id) for d in mismatch], spec.train_datasets, "other classes than the training "
                             "dataset's: ")
        raise _field_error(detail, {f: detail for f in fields})
    return found


def validate(session: Session, settings: Settings, *, user: User,
             body: dict[str, Any] | ExperimentSpec) -> tuple[ExperimentSpec, dict[str, Dataset]]:
    """The spec of a request whose datasets are ids (``body``: a dict, or a spec the API validated), checked
    against the datasets and the limits (a 422 naming the field otherwise), with the datasets it names by key;
    nothing is stored."""
    if isinstance(body, dict) and "sweep" in body:
        raise _field_error("a spec with 'sweep' stands for several experiments: send it to POST /sweeps",
                           {"sweep": "a sweep is sent to POST /sweeps"})
    spec = body if isinstance(body, ExperimentSpec) else parse_spec(body)
    problem = name_problem(spec.name, what="experiment name")
    if problem:
        raise _field_error(problem, {"name": problem})
    found = datasets_of(session, user=user, spec=spec)
    check_cost(settings, spec, found[spec.train_datasets[0]])
    if spec.reuse:  # the content fingerprints of stage keys: read once per dataset, before any lock is held
        reuse.fingerprints(settings, [found[k] for k in spec.train_datasets])
    return spec, found


def check_active_limit(session: Session, settings: Settings, *, user: User) -> None:
    """429 when the user already has the most queued or running experiments (a sweep counts once); the user's
    row stays locked until the commit, so two concurrent requests cannot both pass."""
    crud.lock_user(session, user=user)
    active = crud.count_active_experiments(session, user=user)
    if active >= settings.max_active_experiments:
        raise ServiceError(429, f"you have {active} experiments (or sweeps) queued or running; the limit is "
                            f"{settings.max_active_experiments}. Wait for one to finish or cancel one.")


def store(session: Session, settings: Settings, *, user: User, spec: ExperimentSpec, found: dict[str, Dataset],
          sweep_id: int | None = None, sweep_values: dict[str, Any] | None = None) -> Experiment:
    """Store a validated experiment with its stages (keyed for reuse; not committed, not sent)."""
    exp = crud.create_experiment(
        session, owner=user, name=spec.name, spec=spec.to_json_dict(), plan=spec.plan(),
        datasets=[("train", k, found[k]) for k in spec.train_datasets] + [("eval", k, found[k]) for k in spec.eval_datasets])
    exp.sweep_id, exp.sweep_values = sweep_id, sweep_values
    reuse.plan_reuse(session, settings, exp=exp, spec=spec, train=[found[k] for k in spec.train_datasets])
    return exp


def enqueue(session: Session, exps: list[Experiment]) -> None:
    """Send the stages that can start (after the commit); 503, with the experiments failed, without a broker."""
    try:
        for exp in exps:
            students_of: dict[int | None, list[int]] = {}
            for st in exp.stages:
                if is_student_stage(st.kind):  # created pending: waits for its seed's teacher
                    students_of.setdefault(st.seed, []).append(st.id)
            for st in exp.stages:
                if st.status == "queued":
                    dispatch.enqueue_stage(st.id, kind=st.kind,
                                           then_student_ids=students_of.get(st.seed, []) if st.kind == "teacher" else [])
    except Exception as e:  # noqa: BLE001 - the broker is down: say so instead of leaving it queued forever
        ids = ", ".join(str(x.id) for x in exps)
        log.exception("could not enqueue experiment(s) %s", ids)
        for exp in exps:
            crud.request_cancel(session, experiment_id=exp.id, status="failed",
                                reason=f"could not be queued (broker unavailable: {e})")
        session.commit()
        raise ServiceError(503, f"experiment {ids} was stored but could not be queued: the broker is unavailable "
                            f"({e})") from None


def create(session: Session, settings: Settings, *, user: User, body: dict[str, Any] | ExperimentSpec) -> Experiment:
    """Validate a spec whose datasets are ids (a dict, or a spec the API validated), store the experiment, then
    enqueue its first stages. A refusal about one field names it in ``errors``."""
    spec, found = validate(session, settings, user=user, body=body)
    check_active_limit(session, settings, user=user)
    exp = store(session, settings, user=user, spec=spec, found=found)
    session.commit()
    enqueue(session, [exp])
    session.refresh(exp)
    return exp


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_cost(settings: Settings, spec: ExperimentSpec, train: Dataset) -> None:
    """Refuse (422, naming the limit) a spec no worker can run: too many parameters, too much memory per
    step, or too many steps. Estimated on the meta device in milliseconds, before anything is stored."""
    from sikd_core.models.budget import estimate_cost  # PyTorch: imported by warm_up after the API's start

    cost = estimate_cost(spec, in_channels=train.in_channels, num_classes=train.num_classes,
                         num_pairs=train.num_pairs)
    over = []
    if cost.parameters > settings.max_model_parameters:
        over.append(f"the network has {cost.parameters:,} parameters; the limit (SIKD_MAX_MODEL_PARAMETERS) is "
                    f"{settings.max_model_parameters:,}: use smaller widths")
    if cost.memory_bytes > settings.max_training_memory_bytes:
        over.append(f"one training step needs about {_gib(cost.memory_bytes)} (weights, optimiser state and "
                    f"activations at batch {spec.batch_size} and {spec.image_size[0]}x{spec.image_size[1]} px); the "
                    f"limit (SIKD_MAX_TRAINING_MEMORY_BYTES) is {_gib(settings.max_training_memory_bytes)}: use a "
                    "smaller batch_size, image_size or network")
    if cost.total_steps > settings.max_training_steps:
        over.append(f"the experiment would run {cost.total_steps:,} optimiser steps ({cost.steps_per_epoch:,} per "
                    f"epoch); the limit (SIKD_MAX_TRAINING_STEPS) is {settings.max_training_steps:,}: use fewer "
                    "epochs, steps_per_epoch or seeds")
    if over:
        raise ServiceError(422, "the experiment is too large to run: " + "; ".join(over), cost=cost.as_dict())


def warm_up() -> float:
    """Validate and cost a small spec once, so the first ``POST /experiments`` after a start does not pay for
    the one-off setup of PyTorch's meta-device kernels (1.3 s on a quiet 2-core box, against 16 ms after);
    the API runs it in a background thread at start. Returns the seconds it took."""
    import time

    from sikd_core.models.budget import estimate_cost

    t = time.perf_counter()
    spec = parse_spec({"name": "warm-up", "train_dataset": "1", "image_size": 32, "batch_size": 2,
                       "network_kwargs": {"widths": [4, 8]}})
    estimate_cost(spec, in_channels=1, num_classes=2, num_pairs=4)
    return time.perf_counter() - t


def progress(exp: Experiment) -> float:
    """Overall progress: training stages weighted by epochs, the evaluation by a tenth of them."""
    train = [s for s in exp.stages if s.kind != "evaluation"]
    total = sum(max(s.epochs, 1) for s in train)
    weights = [(max(s.epochs, 1), s) for s in train] + [(max(1.0, total / 10), s) for s in exp.stages
                                                          if s.kind == "evaluation"]
    if exp.status == "succeeded":
        return 1.0
    done = sum(w * (1.0 if s.status == "succeeded" else min(max(s.progress, 0.0), 1.0)) for w, s in weights)
    return done / sum(w for w, _ in weights) if weights else 0.0


def cancel(session: Session, *, exp: Experiment, settings: Settings | None = None) -> None:
    if exp.status not in ACTIVE_EXPERIMENT:
        raise ServiceError(409, f"experiment {exp.id} has already {exp.status}; only queued or running experiments "
                            "can be cancelled")
    crud.request_cancel(session, experiment_id=exp.id, reason="cancelled by the user")
    session.commit()
    if settings is not None:
        reuse.release_waiting(settings)  # identical stages elsewhere that waited for this one's now train


def delete(session: Session, settings: Settings, *, exp: Experiment) -> None:
    """Cancel (running stages stop within a step), remove the rows (models too), then the files."""
    exp_id = exp.id
    if exp.status in ACTIVE_EXPERIMENT:
        crud.request_cancel(session, experiment_id=exp_id, reason="deleted")
        session.commit()
    crud.delete_experiment(session, experiment=exp)
    session.commit()
    reuse.release_waiting(settings)  # identical stages elsewhere that waited for this one's now train
    # stages other experiments reused keep their files: theirs are hard links (sikd_core.reuse)
    dispatch.remove_in_background(settings, experiment_dir(settings, exp_id))


# ------------------------------------------------------------------------------------------ files
def json_safe(obj: Any) -> Any:
    """NaN/inf (which the pipeline writes for undefined distances) become null: JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def require_finished(exp: Experiment, what: str) -> None:
    if exp.status != "succeeded":
        extra = f" ({exp.error})" if exp.error else ""
        raise ServiceError(409, f"experiment {exp.id} is {exp.status}{extra}; its {what} exist once it has succeeded")


#: Files larger than this are parsed on every read instead of being kept in memory.
_CACHE_MAX_BYTES = 8 * 1024**2


@functools.lru_cache(maxsize=16)
def _parsed(path: str, mtime_ns: int, size: int) -> Any:
    """A JSON file's content, keyed by its modification time and size: a rewritten file is read again."""
    return json_safe(json.loads(Path(path).read_text()))


def read_json(settings: Settings, exp: Experiment, rel: str, what: str) -> Any:
    """A JSON file the pipeline wrote, parsed once per version of the file (results are read far more often
    than written). The value is shared between requests: callers must not change it."""
    require_finished(exp, what)
    path = experiment_dir(settings, exp.id) / rel
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise ServiceError(404, f"experiment {exp.id} has no {what} ({rel} is missing)")
    if st.st_size > _CACHE_MAX_BYTES:
        return json_safe(json.loads(path.read_text()))
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


def report(settings: Settings, exp: Experiment) -> dict[str, Any]:
    return read_json(settings, exp, "report.json", "results")


def headline(rep: dict[str, Any]) -> dict[str, Any]:
    """The experiment's summary for lists (small, stored on the row): per method, the mean Dice over its intra
    test split(s) and over the cross datasets (None where there are none), in the report's method order."""
    rows = json_safe(rep.get("summary") or [])
    dice: dict[str, dict[str, float | None]] = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        out: dict[str, float | None] = {}
        for split in ("intra", "cross"):
            v = [r["dice_mean"] for r in rows if r["method"] == m and r["split"] == split
                 and r.get("dice_mean") is not None]
            out[split] = sum(v) / len(v) if v else None
        dice[m] = out
    return {"dice": dice, "health": stored_health(rep)}


def fill_summaries(session: Session, settings: Settings, exps: list[Experiment]) -> None:
    """Store the summary of succeeded experiments that lack one (finished before summaries, or their health, were
    kept): read their report once, then never again. An unreadable report leaves the summary empty."""
    missing = [e for e in exps if e.status == "succeeded" and (e.summary is None or "health" not in e.summary)]
    for e in missing:
        try:
            e.summary = headline(report(settings, e))
        except (ServiceError, OSError, ValueError, KeyError, TypeError) as err:
            log.warning("experiment %s: no summary from its report (%s)", e.id, err)
    if missing:
        session.commit()


def report_markdown(settings: Settings, exp: Experiment) -> str:
    require_finished(exp, "report")
    path = experiment_dir(settings, exp.id) / "report.md"
    if not path.is_file():
        raise ServiceError(404, f"experiment {exp.id} has no report.md")
    return path.read_text(encoding="utf-8")


def overlays(settings: Settings, exp: Experiment, *, dataset: str | None, category: str | None,
             sort: str | None) -> list[dict[str, Any]]:
    items = read_json(settings, exp, "eval/overlays.json", "overlays")
    if dataset:
        items = [o for o in items if o["dataset"] == dataset]
    if category:
        items = [o for o in items if category in o["categories"]]
    if sort == "dice_diff":  # largest SIKD gain first (sorted copies: ``items`` may be the cached list)
        items = sorted(items, key=lambda o: -(o["dice_diff"] if o["dice_diff"] is not None else -math.inf))
    elif sort == "worst":  # lowest Dice of SIKD (else of the only method) first
        def main_dice(o: dict[str, Any]) -> float:
            sc = o["scores"].get("sikd") or next(iter(o["scores"].values()), {})
            return sc.get("dice") if sc.get("dice") is not None else math.inf
        items = sorted(items, key=main_dice)
    return items


def cases(settings: Settings, exp: Experiment, *, dataset: str | None, method: str | None,
          split: str | None) -> list[dict[str, Any]]:
    """Per-case scores of every model (``eval/cases.json``), optionally of one dataset, method or split."""
    items = read_json(settings, exp, "eval/cases.json", "per-case scores")
    return [c for c in items if (dataset is None or c["dataset"] == dataset)
            and (method is None or c["method"] == method) and (split is None or c["split"] == split)]


def prediction_files(settings: Settings, exp: Experiment) -> list[tuple[Path, str]]:
    require_finished(exp, "predictions")
    root = experiment_dir(settings, exp.id) / "eval" / "predictions"
    if not root.is_dir():
        raise ServiceError(404, f"experiment {exp.id} kept no predictions (spec save_predictions is false)")
    return [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*.png")) if p.is_file()]


class _Sink:
    """A write-only file object whose bytes are taken out as they come (zip streaming)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def stream_zip(files: list[tuple[Path, str]]) -> Iterator[bytes]:
    """A zip of ``(path, name in zip)`` produced file by file (never the whole archive in memory)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as zf:  # type: ignore[arg-type]
        for path, name in files:
            with open(path, "rb") as src, zf.open(name, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            yield sink.take()
    yield sink.take()

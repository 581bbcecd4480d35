"""Dataset operations beyond upload (see :mod:`sikd_service.ingest`): deletion, the earlier uploads of the same
content, how the keys are numbered (names: :mod:`sikd_service.names`), and planning an experiment from a dataset
(``sikd plan``'s service side)."""

from __future__ import annotations

import re
import threading
from typing import Any

from sqlalchemy.orm import Session

from sikd_service import crud, dispatch
from sikd_service.config import Settings
from sikd_service.errors import ServiceError, not_found
from sikd_service.storage import dataset_dir
from sikd_service.tables import Dataset, User


def delete(session: Session, settings: Settings, *, user: User, dataset_id: int) -> None:
    """Delete a dataset row its owner (or an admin) may delete and no experiment uses, then remove its files
    in the background (default queue): the row goes at once, the folder when a light worker gets to it."""
    ds = crud.get_dataset(session, user=user, dataset_id=dataset_id)
    if ds is None:
        raise not_found("dataset", dataset_id)
    if ds.owner_id != user.id and not user.is_admin:
        raise ServiceError(403, f"dataset {dataset_id} is shared with you; only its owner or an admin may delete it")
    users = crud.experiments_using_dataset(session, dataset_id=dataset_id)
    if users:
        names = ", ".join(f"{e.id} ({e.name!r})" for e in users)
        raise ServiceError(409, f"dataset {dataset_id} is used by experiment(s) {names}; delete them first",
                       experiments=[e.id for e in users])
    session.delete(ds)
    session.commit()
    dispatch.remove_in_background(settings, dataset_dir(settings, dataset_id))


def duplicates(session: Session, *, user: User, ds: Dataset) -> list[Dataset]:
    """The datasets ``user`` sees that were uploaded before ``ds`` with the same content (the same files, byte for
    byte: ``stats["content_hash"]``, recorded at upload); empty for datasets uploaded before it was recorded."""
    digest = (ds.stats or {}).get("content_hash")
    if not digest:
        return []
    rows, _ = crud.list_datasets(session, user=user, skip=0, limit=1_000_000)
    return [d for d in rows if d.id < ds.id and (d.stats or {}).get("content_hash") == digest]


#: A key holding one number (a frame index): ``frame_0012``, ``12``, ``cvc 12.png``.
_NUMBERED = re.compile(r"^\D*?(\d+)\D*$")


def numbering(keys: list[str]) -> dict[str, Any] | None:
    """How the sample keys are numbered, over every sample (not the thumbnails' few): ``{first, last,
    numbered}`` (the smallest and largest number and how many keys hold one); None when none does."""
    nums = [int(m.group(1)) for k in keys if (m := _NUMBERED.match(str(k)))]
    if not nums:
        return None
    return {"first": min(nums), "last": max(nums), "numbered": len(nums)}


#: Per stored dataset (id, content hash, pairs): the time to read one pair, timed on its first plan in this process
#: (a sample of 32 pairs, about a second) and reused by the next plans (the statistics come from the upload's scan).
_READ_SECONDS: dict[tuple[int, str | None, int], float] = {}
_READ_SECONDS_KEPT = 512
_READ_SECONDS_LOCK = threading.Lock()


def plan(session: Session, settings: Settings, *, user: User, dataset_id: int, eval_datasets: list[int] | None = None,
         device: str = "auto", device_memory_gb: float | None = None, budget_minutes: float | None = None,
         measure: bool = True) -> dict[str, Any]:
    """``sikd plan`` for a stored dataset: its fingerprint (the upload's full statistics, plus a timed read of a
    sample of its files), the device of the most capable live worker (:func:`sikd_service.devices.plan_device`)
    and a spec naming the datasets by id, as POST /experiments takes. The run time rests on steps measured on the
    workers (:mod:`sikd_service.steptimes`); a configuration not measured yet is sent to a worker to be timed and
    answered a-priori or "not measured yet" meanwhile. No PyTorch here."""
    from sikd_core.errors import SIKDError
    from sikd_core.plan import fingerprint_of, plan_yaml
    from sikd_core.plan import plan as make_plan
    from sikd_service import devices, estimate, steptimes
    from sikd_service.ingest import dataset_manifest

    ds = crud.get_dataset(session, user=user, dataset_id=dataset_id, with_manifest=True)
    if ds is None:
        raise not_found("dataset", dataset_id)
    eval_pairs = 0
    for other in eval_datasets or []:
        e = crud.get_dataset(session, user=user, dataset_id=other)
        if e is None:
            raise not_found("dataset", other)
        eval_pairs += e.num_pairs
    key = (ds.id, ds.content_hash, ds.num_pairs)  # a pair's read time, measured once per stored content
    fp = fingerprint_of(dataset_manifest(settings, ds), ds.stats, _READ_SECONDS.get(key))
    with _READ_SECONDS_LOCK:  # (requests run in a thread pool)
        _READ_SECONDS[key] = fp["read_seconds_per_pair"]
        while len(_READ_SECONDS) > _READ_SECONDS_KEPT:
            _READ_SECONDS.pop(next(iter(_READ_SECONDS)))
    fp["name"] = ds.name
    costs = estimate.calibrate(session, settings) if measure else None

    def timings(config: dict[str, Any]) -> dict[str, Any]:
        assert costs is not None
        cfg = steptimes.StepConfig.of(config["network"], config["network_kwargs"], config["in_channels"],
                                      config["num_classes"], config["image_size"], config["batch"])
        step, basis = steptimes.step_cost(costs, cfg, student=False, kind="baseline")
        student, _ = steptimes.step_cost(costs, cfg, student=True, kind="student")
        if step is None or student is None:
            return {"basis": basis}
        return {"step_s": step, "student_step_s": student, "forward_s": step / 3, "basis": basis}

    try:
        dev = devices.plan_device(session, settings, device=device, memory_gib=device_memory_gb)
        result = make_plan(ds.id, eval_datasets=list(eval_datasets or []), dev=dev, budget_minutes=budget_minutes,
                           measure=measure, fp=fp, eval_pairs=eval_pairs, name=f"{ds.name} (planned)",
                           timings=timings)
    except SIKDError as e:
        raise ServiceError(422, str(e)) from None
    if costs is not None and costs.missing:
        steptimes.request(session, costs.missing)
        note = steptimes.pending_note(session, costs.missing)
        if note and result["estimate"] is not None:
            result["estimate"]["timing"] = note
    return {**result, "yaml": plan_yaml(result)}

"""The stage plan of a spec, derived in one place: which stages it trains, and what each one is.

Every other part reads it: the spec's :meth:`~sikd_core.spec.ExperimentSpec.stages`, the pipeline, the service
(stage rows, their epochs, which stages wait for a teacher), the model card. Words used throughout:

* **method**: what a user asks for in ``spec.methods`` (``baseline``, ``sikd``, ``sdm``, ``gin+sikd``,
  ``reference``); it names the trained **model** in results;
* **stage**: one training job of one seed: a method's stage is named after it (``sikd``'s is ``student``), plus
  one ``teacher`` per seed shared by every distilled method;
* **role**: ``plain`` (trained alone), ``teacher`` (on class-mean images; never evaluated: it needs labels at
  inference) or ``student`` (distilled from its seed's teacher: it waits for the teacher);
* **network**: the registered architecture a stage trains (the spec's ``network``; the reference recipe's own);
* **stage key**: what identifies a finished stage (:func:`stage_key`): a stage with the same key is not trained
  again, its model is reused (the service and the CLI's output folders).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from sikd_core.methods.registry import REFERENCE, REFERENCE_NETWORK, SIKD, SUFFIX, parse_method

if TYPE_CHECKING:
    from sikd_core.spec import ExperimentSpec

TEACHER = "teacher"
STUDENT = "student"  # sikd's student stage
EVALUATION = "evaluation"
Role = Literal["plain", "teacher", "student"]


@dataclass(frozen=True)
class PlannedStage:
    """One training stage of a spec's plan."""

    stage: str
    seed: int
    role: Role
    #: The method whose model this stage trains (None for the teacher).
    method: str | None
    #: The method without distillation (``gin`` for ``gin+sikd``, ``baseline`` for ``sikd``).
    base: str | None
    #: The stage this one distils from (``teacher`` for students), else None.
    teacher: str | None
    epochs: int
    #: The registered network it trains.
    network: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_of_method(method: str) -> str:
    """The training stage that produces ``method``'s model (``sikd`` -> ``student``, else the name)."""
    return STUDENT if method == SIKD else method


def method_of_stage(stage: str) -> str | None:
    """The method a stage's model is reported as (None for the teacher and the evaluation)."""
    if stage in (TEACHER, EVALUATION):
        return None
    return SIKD if stage == STUDENT else stage


def is_student_stage(stage: str) -> bool:
    """A stage that distils from its seed's teacher (``student`` for sikd, any ``X+sikd``): it waits for it."""
    return stage == STUDENT or stage.endswith(SUFFIX)


def is_distilled_method(method: str | None) -> bool:
    """Whether ``method``'s model is a student of the seed's teacher (``sikd``, ``X+sikd``); unknown: False."""
    return bool(method) and (method == SIKD or str(method).endswith(SUFFIX))


def stage_plan(spec: ExperimentSpec) -> list[PlannedStage]:
    """The spec's training stages in a valid order. Per seed: the methods without distillation (in spec order),
    then one teacher shared by every distilled method, then its students."""
    out: list[PlannedStage] = []
    for seed in spec.seeds:
        parsed = [(m, *parse_method(m)) for m in spec.methods]
        for m, base, _ in (p for p in parsed if not p[2]):
            out.append(PlannedStage(m, seed, "plain", m, base, None, spec.epochs,
                                    REFERENCE_NETWORK if m == REFERENCE else spec.network))
        distilled = [p for p in parsed if p[2]]
        if distilled:
            out.append(PlannedStage(TEACHER, seed, "teacher", None, None, None, spec.effective_teacher_epochs,
                                    spec.network))
            for m, base, _ in distilled:
                out.append(PlannedStage(stage_of_method(m), seed, "student", m, base, TEACHER, spec.epochs,
                                        spec.network))
    return out


def stored_stage_plan(spec: dict[str, Any]) -> list[PlannedStage]:
    """The stage plan of a spec stored as JSON after it was validated (an experiment's ``spec``), without
    validating it again: a status read must not rebuild the network to check its arguments."""
    from sikd_core.spec import stored_spec

    return stage_plan(stored_spec(spec))


# ------------------------------------------------------------------------------------------ stage keys
#: Bump when a change to the training code makes a stage trained before it differ from one trained after: every
#: stage key changes with it, so nothing trained by older code is reused.
TRAINING_CODE_VERSION = 1

#: Settings every training stage depends on: the data as read and split, the network, the optimiser's budget.
_DATA_KEYS = ("image_size", "mask_mode", "val_fraction", "test_fraction", "split_seed")
_NETWORK_KEYS = ("network", "network_kwargs", "amp")
#: The names the settings of a key carry, where a key was renamed since stage keys were first computed: a stage
#: key must not change with a name, or every stage trained before would be trained again.
_KEY_NAMES = {"network": "model", "network_kwargs": "model_kwargs"}
_RECIPE_KEYS = ("batch_size", "lr", "weight_decay", "loss", "augment", "steps_per_epoch")
#: The teacher's own settings (its students depend on them too, through the teacher they learn from).
_TEACHER_KEYS = ("teacher_input", "teacher_skip_connections")
#: What only a student adds.
_STUDENT_KEYS = ("alpha", "student_head_init")
#: The reference recipe sets its own learning rate, weight decay, loss and augmentation (methods/reference.py).
_REFERENCE_FIXED = ("lr", "weight_decay", "loss", "augment")


def stage_settings(spec: ExperimentSpec, planned: PlannedStage) -> dict[str, Any]:
    """The spec's settings that reach ``planned`` (and nothing else: a baseline does not see ``alpha``, a
    teacher neither; a student sees its teacher's settings and its own). Names, devices, evaluation datasets,
    the other methods and seeds, and what only the evaluation reads are left out."""
    d = spec.to_json_dict()
    keys = [*_DATA_KEYS, *_NETWORK_KEYS, *_RECIPE_KEYS]
    if planned.method == REFERENCE:
        keys = [k for k in keys if k not in _REFERENCE_FIXED]
    if planned.role in ("teacher", "student"):
        keys += _TEACHER_KEYS
    if planned.role == "student":
        keys += _STUDENT_KEYS
    out = {_KEY_NAMES.get(k, k): d[k] for k in keys}
    if planned.method != REFERENCE and d["augment"] and d.get("augmentation", "standard") != "standard":
        out["augmentation"] = d["augmentation"]  # only when not the default: stages trained before it keep their keys
    out.update(stage=planned.stage, role=planned.role, method=planned.method, network=planned.network,
               seed=planned.seed, epochs=planned.epochs)
    if planned.role == "student":  # the teacher it distils from, by what determines it
        out["teacher_epochs"] = spec.effective_teacher_epochs
    return out


def stage_key(spec: ExperimentSpec, planned: PlannedStage, datasets: Sequence[str]) -> str:
    """What identifies a finished stage: a SHA-256 of the content of its training datasets (``datasets``: their
    fingerprints in ``spec.train_datasets`` order, see :func:`sikd_core.data.fingerprint.manifest_fingerprint`,
    never their ids or paths), the settings that reach it (:func:`stage_settings`: split, seed, network and its
    arguments, recipe...) and :data:`TRAINING_CODE_VERSION`. Two stages with the same key train the same model."""
    if len(datasets) != len(spec.train_datasets):
        raise ValueError(f"stage_key needs one fingerprint per training dataset ({len(spec.train_datasets)}); "
                         f"got {len(datasets)}")
    body = {"version": TRAINING_CODE_VERSION, "datasets": list(datasets), "settings": stage_settings(spec, planned)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stage_keys(spec: ExperimentSpec, datasets: Sequence[str]) -> dict[tuple[str, int], str]:
    """:func:`stage_key` of every stage of the spec's plan, by ``(stage, seed)``."""
    return {(p.stage, p.seed): stage_key(spec, p, datasets) for p in stage_plan(spec)}

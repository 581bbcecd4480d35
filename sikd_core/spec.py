"""ExperimentSpec: the one schema the CLI, the API and the worker share.

A spec file (YAML or JSON) holds these keys; unknown keys are an error and missing ones take the
defaults below, which follow the paper (U-Net, cross-entropy, alpha = 2, class-mean teacher input,
baseline + SIKD). Datasets are folder paths for the CLI and dataset ids for the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sikd_core.errors import SpecError

TeacherInput = Literal["class_mean", "image", "label_map"]
#: The paper's pair, kept for callers that only know these two; every registered method and ``X+sikd``
#: composition is valid (:func:`sikd_core.methods.method_names`).
METHODS: tuple[str, ...] = ("baseline", "sikd")
TEACHER_INPUTS: tuple[str, ...] = ("class_mean", "image", "label_map")
#: Seeds and counts are strict integers (``true``, ``"3"`` or ``2.0`` are refused) in ranges a worker can hold.
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]
Number = StrictFloat  # an int is accepted (as a float), a bool or a string is not


class ExperimentSpec(BaseModel):
    """Everything needed to reproduce one experiment (baseline vs SIKD, intra- and cross-dataset)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, validate_assignment=True)

    name: str = Field("experiment", min_length=1, max_length=200, description="A label for people.")
    train_dataset: str | list[str] = Field(
        ..., description="Training dataset: folder path (CLI) or id (API); a list trains on several sources "
        "together (split per source; each source's test split is an intra row).")
    eval_datasets: list[str] = Field(
        default_factory=list, description="Datasets of the same task never seen in training (cross-dataset)."
    )
    network: str = Field("unet", validation_alias=AliasChoices("network", "model"),
                         description="Registered network name (see `sikd networks`); read under its old name "
                         "`model` too.")
    network_kwargs: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("network_kwargs", "model_kwargs"),
        description="Extra network arguments, e.g. widths; read under its old name `model_kwargs` too.")
    image_size: tuple[StrictInt, StrictInt] = Field((256, 256), description="Training size H,W (an int means square).")
    epochs: StrictInt = Field(50, ge=1, le=10000, description="Epochs of the baseline and the student.")
    teacher_epochs: StrictInt | None = Field(None, ge=1, le=10000, description="Teacher epochs (default: epochs).")
    batch_size: StrictInt = Field(8, ge=1, le=1024)
    lr: Number = Field(1e-3, gt=0, le=1.0, description="Adam learning rate, decayed polynomially (power 0.9).")
    weight_decay: Number = Field(0.0, ge=0, le=1.0)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=20)
    methods: list[str] = Field(
        default_factory=lambda: ["baseline", "sikd"], min_length=1, max_length=32,
        description="Training methods (see GET /options or `sikd methods`): baseline, sikd, sdm, gin, maxstyle, "
        "and X+sikd (X trained and distilled from the class-mean teacher).")
    alpha: Number = Field(2.0, ge=0, le=1e4, description="Weight of the feature-distillation MSE.")
    teacher_input: TeacherInput = Field("class_mean", description="class_mean (SIKD) or the ablations.")
    student_head_init: Literal["teacher", "random"] = Field(
        "teacher", description="Start of the student's 1x1 head: a copy of the frozen teacher's (default; it "
        "still trains) or random He init. The MSE pins the student's features to the teacher's, so only the "
        "teacher's head already reads them; with a random head small students (8-wide head) collapsed or ended "
        "far below the baseline. Inference cost is unchanged.")
    teacher_skip_connections: StrictBool = Field(
        False, description="Keep skip connections in the teacher (the paper drops them; ablation)."
    )
    recipe: Literal["standard", "paper"] = Field(
        "standard", description="The training recipe's defaults: standard (measured to make the baseline as strong "
        "as an independent nnU-Net-like recipe: loss dice_ce; see bench/recipe_defaults.py) or paper (the SIKD "
        "authors' recipe exactly: cross-entropy for U-Net). Keys given explicitly win over the recipe's.")
    loss: Literal["ce", "dice_ce"] = Field(
        "dice_ce", description="Segmentation loss: ce (the paper's) or dice_ce (cross-entropy + soft Dice). Default "
        "by recipe: dice_ce for standard, ce for paper.")
    augment: StrictBool = Field(True, description="Flips, rotation, scale/translate, intensity jitter.")
    augmentation: Literal["standard", "nnunet"] = Field(
        "standard", description="Which augmentation every method but the reference trains with when augment is on: "
        "standard (flips, rotation +-15 deg, scale 0.85-1.15, shifts, mild intensity jitter; the benchmarks' "
        "default) or nnunet (the reference recipe's: full rotation, scale 0.7-1.4, mirroring, stronger intensity "
        "jitter, Gaussian noise and blur), to compare methods over a baseline augmented as nnU-Net's.")
    val_fraction: Number = Field(0.1, ge=0.0, lt=0.9)
    test_fraction: Number = Field(0.2, gt=0.0, lt=0.9)
    split_seed: Seed = Field(0, description="Seed of the train/val/test split (same for every method).")
    mask_mode: Literal["auto", "label", "binary"] = Field("auto", description="How masks are read.")
    steps_per_epoch: StrictInt | None = Field(None, ge=1, le=10**9, description="Default: one pass over the training split.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    amp: StrictBool = Field(True, description="bf16 autocast and channels_last on CUDA (ignored on CPU).")
    save_predictions: StrictBool = Field(True, description="Keep predicted masks of the first seed for overlays.")
    feature_maps: StrictInt = Field(2, ge=0, le=16, description="Images per dataset rendered as feature maps.")
    reuse: StrictBool = Field(
        True, description="Reuse a finished stage identical to one of this experiment's (same data content, split, "
        "seed, network and the settings that reach the stage: sikd_core.methods.plan.stage_key) instead of training "
        "it again; false retrains every stage.")
    on_unhealthy: Literal["warn", "stop"] = Field(
        "warn", description="Training health findings (collapsed predictions, zero Dice, exploding loss, an "
        "unlearned teacher): warn records them; stop fails the stage at the first one.")

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, data: Any) -> Any:
        """Fill the keys the chosen recipe sets (:data:`RECIPES`) where the spec does not give them."""
        if isinstance(data, dict):
            recipe = data.get("recipe", "standard")
            if isinstance(recipe, str) and recipe in RECIPES:  # else the field's own check reports it
                given = {k: v for k, v in data.items() if not (v is None and k in RECIPES[recipe])}
                data = {**RECIPES[recipe], **given}
        return data

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """A key may come under its old name (:data:`RENAMED_KEYS`; the field's alias reads it, so an error names
        the key the caller sent); under both names it must hold one value."""
        return with_current_names(data, rename=False) if isinstance(data, dict) else data

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        return v

    @field_validator("image_size")
    @classmethod
    def _size_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= s <= 4096 for s in v):
            raise ValueError(f"image_size must lie in [16, 4096]; got {list(v)}")
        return v

    @field_validator("seeds", "methods")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicates in {v}")
        return v

    @field_validator("train_dataset")
    @classmethod
    def _train_datasets(cls, v: str | list[str]) -> str | list[str]:
        items = [v] if isinstance(v, str) else v
        if not items or any(not str(k).strip() for k in items):
            raise ValueError("train_dataset must name at least one dataset (a non-empty string or list)")
        if len(set(items)) != len(items):
            raise ValueError(f"train_dataset holds duplicates: {items}")
        return v[0] if isinstance(v, list) and len(v) == 1 else v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str], info: ValidationInfo) -> list[str]:
        from sikd_core.methods import method_info, parse_method

        for name in v:
            try:
                parse_method(name)
            except SpecError as e:
                raise ValueError(str(e)) from None
        network = info.data.get("network")  # absent when the network itself was invalid (and is reported)
        for name in v if network else ():
            allowed = method_info(parse_method(name)[0]).networks
            if allowed and network not in allowed:
                raise ValueError(f"method {name!r} needs network {' or '.join(allowed)}; got {network!r}")
        return v

    @field_validator("eval_datasets")
    @classmethod
    def _unseen(cls, v: list[str], info: ValidationInfo) -> list[str]:
        train = info.data.get("train_dataset")
        if train is not None and set([train] if isinstance(train, str) else train) & set(v):
            raise ValueError("eval_datasets must not contain the training dataset (its test split is the intra score)")
        if len(set(v)) != len(v):
            raise ValueError("eval_datasets holds duplicates")
        return v

    @field_validator("augmentation")
    @classmethod
    def _augmentation_needs_augment(cls, v: str, info: ValidationInfo) -> str:
        if v != "standard" and info.data.get("augment") is False:
            raise ValueError(f"augmentation {v!r} needs augment: true (augment: false trains without any)")
        return v

    @field_validator("test_fraction")
    @classmethod
    def _leaves_training_data(cls, v: float, info: ValidationInfo) -> float:
        if "val_fraction" in info.data and info.data["val_fraction"] + v >= 0.95:
            raise ValueError("val_fraction + test_fraction must leave data to train on (< 0.95)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("auto", "cpu", "cuda", "mps") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {v!r}")
        return v

    @field_validator("network")
    @classmethod
    def _known_network(cls, v: str) -> str:
        from sikd_core.errors import UnknownModelError
        from sikd_core.models import model_info

        try:
            model_info(v)
        except UnknownModelError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("network_kwargs")
    @classmethod
    def _buildable(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The network must build with these arguments (checked on the meta device: no weights)."""
        from sikd_core.models import check_model_kwargs

        if "network" in info.data:  # else the network name itself was invalid and is reported
            try:
                check_model_kwargs(info.data["network"], v)
            except SpecError as e:
                raise ValueError(str(e)) from None
        return v

    # ----------------------------------------------------------------------------------------------
    @property
    def effective_teacher_epochs(self) -> int:
        return self.teacher_epochs or self.epochs

    @property
    def train_datasets(self) -> list[str]:
        """The training sources as a list (one entry for a single dataset)."""
        return [self.train_dataset] if isinstance(self.train_dataset, str) else list(self.train_dataset)

    @property
    def needs_teacher(self) -> bool:
        return any(p.role == "teacher" for p in self.plan())

    def plan(self) -> list[Any]:
        """The stage plan (:func:`sikd_core.methods.plan.stage_plan`): every training stage and what it is."""
        from sikd_core.methods.plan import stage_plan

        return stage_plan(self)

    def stages(self) -> list[tuple[str, int]]:
        """Training stages ``(stage, seed)`` in a valid order (:meth:`plan`)."""
        return [(p.stage, p.seed) for p in self.plan()]

    def to_json_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["image_size"] = list(self.image_size)
        return d


# The stage/method name rules live with the plan (sikd_core.methods.plan); these delegate (imported lazily: the
# spec module stays free of torch until a spec is validated).
def stage_of_method(method: str) -> str:
    """The training stage that produces ``method``'s model (``sikd`` -> ``student``, else the name)."""
    from sikd_core.methods.plan import stage_of_method as rule

    return rule(method)


def is_student_stage(stage: str) -> bool:
    """A stage that distils from its seed's teacher (``student`` for sikd, ``X+sikd``): it waits for the teacher."""
    from sikd_core.methods.plan import is_student_stage as rule

    return rule(stage)


def method_of_stage(stage: str) -> str | None:
    """The method a stage's model is reported as (None for the teacher, which needs labels at inference)."""
    from sikd_core.methods.plan import method_of_stage as rule

    return rule(stage)


#: Spec keys renamed since specs were first stored, old name -> current name: ``model`` named the network, and
#: means a trained model now. Request bodies, spec files, reports, bundles and rows written before the rename are
#: read all the same (the database's rows are rewritten by migration 0008); specs are written with the new names.
RENAMED_KEYS: dict[str, str] = {"model": "network", "model_kwargs": "network_kwargs"}


def with_current_names(data: dict[str, Any], *, rename: bool = True) -> dict[str, Any]:
    """A copy of ``data`` (a spec as a dict) with every key of :data:`RENAMED_KEYS` under its current name. Given
    under both names, the key must hold one value: else a :class:`SpecError` naming both (``rename=False``, for the
    spec's own validation: only a repeated old key is dropped, and one that differs is left for the unknown-key
    check, whose message :func:`spec_error_message` words with both names)."""
    out = dict(data)
    for old, new in RENAMED_KEYS.items():
        if old in out and new in out:
            if out[old] != out[new]:
                if rename:
                    raise SpecError(f"{old}: {renamed_conflict(old, out[old])}")
                continue
            del out[old]
        elif old in out and rename:
            out[new] = out.pop(old)
    return out


def stored_spec(data: dict[str, Any]) -> ExperimentSpec:
    """A spec stored as JSON after it was validated (an experiment's row), without validating it again: a status
    read must not rebuild the network to check its arguments. Old key names are read (:data:`RENAMED_KEYS`)."""
    current = with_current_names(data)
    return ExperimentSpec.model_construct(**{k: v for k, v in current.items() if k in ExperimentSpec.model_fields})


def renamed_conflict(old: str, value: Any) -> str:
    """The message for an old key given beside its new name with another value."""
    new = RENAMED_KEYS[old]
    return f"the old name of {new}; both are given, with different values ({old}: {value!r}): give {new} only"[:300]


#: What each recipe sets where the spec does not say (``recipe: paper`` is the SIKD authors' setting exactly).
RECIPES: dict[str, dict[str, Any]] = {
    "standard": {"loss": "dice_ce"},
    "paper": {"loss": "ce"},
}

#: The spec keys a size preset sets.
PRESET_KEYS: tuple[str, ...] = ("network", "network_kwargs", "image_size", "epochs", "batch_size", "lr")


def spec_defaults(keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The spec's defaults of ``keys`` (default: every key that has one), as JSON values (tuples become lists)."""
    if keys is None:
        keys = tuple(k for k, f in ExperimentSpec.model_fields.items() if not f.is_required())
    out = {}
    for k in keys:
        v = ExperimentSpec.model_fields[k].get_default(call_default_factory=True)
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


#: Starting points for the size of an experiment (spec keys they set, with a word on when to use them).
#: ``paper`` is the spec's defaults; ``quick`` is what ``sikd demo`` trains.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "paper": ("The paper's U-Net (64-1024) at 256 px for 50 epochs: for a GPU worker (hours on a CPU).",
              spec_defaults(PRESET_KEYS)),
    "quick": ("A small U-Net (16-128) at 96 px for 30 epochs: a first look, about 3 minutes per experiment on "
              "2 CPU cores with the demo phantoms. Adam 5e-3 with the standard recipe's Dice + CE. Trained this long "
              "(30 full epochs: about 1 300 steps on Kvasir-SEG, 2 000 on BUSI) this U-Net's baseline stood within "
              "0.02 Dice of the reference recipe or above it on both (bench/reference_budget.py, 64 px, two seeds); "
              "at 400 steps it trailed it by 0.04-0.07 on Kvasir-SEG. Keep the reference in the experiment to see "
              "where yours stands.",
              {"network": "unet", "network_kwargs": {"widths": [16, 32, 64, 128]}, "image_size": [96, 96],
               "epochs": 30, "batch_size": 8, "lr": 5e-3}),
}


def parse_spec(data: dict[str, Any]) -> ExperimentSpec:
    """Validate a spec dict, turning pydantic's errors into one readable :class:`SpecError` (its ``errors``:
    one ``{loc, msg, type}`` per problem, ``loc`` naming the field)."""
    if not isinstance(data, dict):
        raise SpecError(f"a spec must be a mapping of keys to values; got {type(data).__name__}",
                        errors=[{"loc": [], "msg": "a spec must be a mapping of keys to values", "type": "dict_type"}])
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as e:
        errors = spec_error_items(e.errors())
        raise SpecError(SPEC_ERROR_TITLE + ":\n" + format_error_items(errors), errors=errors) from None


SPEC_ERROR_TITLE = "invalid experiment spec"


def spec_error_message(err: dict[str, Any], known: Any = None) -> str:
    """A pydantic error's message as a user reads it: no ``Value error,`` prefix; an unknown key lists the known
    ones (``known``: the fields, default the spec's); a missing one says ``required``."""
    if err.get("type") == "extra_forbidden" and tuple(err.get("loc", ()))[-1:] in [(k,) for k in RENAMED_KEYS]:
        return renamed_conflict(err["loc"][-1], err.get("input"))
    if err.get("type") == "extra_forbidden":
        return "unknown key; known keys: " + ", ".join(known if known is not None else ExperimentSpec.model_fields)
    if err.get("type") == "missing":
        return "required"
    return str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def spec_error_items(errors: list[Any], prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{loc, msg, type}`` (the shape of FastAPI's 422 items), messages as
    :func:`spec_error_message` words them, ``loc`` after ``prefix``."""
    return [{"loc": [*prefix, *err.get("loc", ())], "msg": spec_error_message(err), "type": err.get("type", "")}
            for err in errors]


def format_error_items(errors: list[dict[str, Any]], skip: int = 0) -> str:
    """``  <field>: <message>`` lines (``(spec)`` for a problem of no one field); ``skip`` leading loc parts."""
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc'][skip:]) or '(spec)'}: {e['msg']}" for e in errors)


def format_validation_error(e: ValidationError) -> str:
    return format_error_items(spec_error_items(e.errors()))


def load_spec(path: str | Path, **overrides: Any) -> ExperimentSpec:
    """Read a YAML or JSON spec file. ``overrides`` replace keys (e.g. from the command line)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parser error becomes a spec error naming the file
        raise SpecError(f"cannot parse spec file {path}: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"spec file {path} must hold a mapping of keys to values")
    for k, v in overrides.items():
        if v is None:
            continue
        for old, new in RENAMED_KEYS.items():  # an override under either name replaces the file's key
            if k in (old, new):
                data.pop(old, None)
                data.pop(new, None)
        data[k] = v
    return parse_spec(data)

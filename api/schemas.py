"""Request and response bodies: ``XCreate`` (in) and ``XPublic`` (out) families; lists are ``{data, count}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from sikd_core.spec import SPEC_ERROR_TITLE, ExperimentSpec
from sikd_service.names import name_problem

T = TypeVar("T")

ExperimentStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
StageStatus = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]
#: baseline, teacher, student (SIKD's), evaluation, or a training method's stage: its name (sdm, gin+sikd...).
StageKind = str


class ORM(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Number of items matching the query (all pages).")


class Message(BaseModel):
    detail: str


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where: path, query, header or body, then the field")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a readable ``detail``; a validation error (422) adds ``errors``, one per problem;
    dataset errors add ``problems`` and ``files``, a too-large spec its ``cost``."""

    detail: str
    errors: list[ErrorItem] | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses ``codes``, with the body every error has."""
    return {code: {"model": ErrorBody, "description": ERROR_MEANINGS[code]} for code in codes}


#: What each error status means in this API (the descriptions of the documented responses).
ERROR_MEANINGS = {
    400: "Malformed request: an unreadable body, Content-Length or multipart form",
    401: "No bearer token, or an unknown or revoked one (answered before the body is read)",
    403: "Only an admin may do this",
    404: "No such object, or not yours",
    409: "The object is not in a state that allows this (e.g. not finished, or in use)",
    413: "The body is larger than this route's limit (SIKD_MAX_JSON_BYTES, or the upload limits), or an upload "
         "holds too many files",
    422: "Invalid parameters or body: `detail` says what, `errors` lists each problem",
    429: "Too many active experiments",
    503: "A dependency is unavailable (the broker), or the storage refuses writes",
    507: "The storage is full",
}


# ------------------------------------------------------------------------------------------ users
class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@+-]+$",
                      description="Letters, digits and . @ + - _ (no spaces, control characters or markup).")
    is_admin: StrictBool = False

    @field_validator("name", mode="before")
    @classmethod
    def _display_name(cls, v: Any) -> Any:
        """Control characters and markup are named (the same check as dataset and experiment names), before
        the pattern's generic message."""
        problem = name_problem(v, what="user name", max_length=100) if isinstance(v, str) else None
        if problem:
            raise ValueError(problem)
        return v


class UserPublic(ORM):
    id: int
    name: str
    is_admin: bool
    created_at: datetime


class TokenPublic(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'. Shown once; only its hash is stored.")
    user: UserPublic


# ------------------------------------------------------------------------------------------ datasets
class DatasetPublic(ORM):
    id: int
    name: str
    owner_id: int
    format: str
    num_pairs: int
    num_classes: int
    class_names: list[str]
    in_channels: int
    size_bytes: int
    shared: bool
    synthetic: bool
    created_at: datetime


class SamplePublic(BaseModel):
    index: int
    key: str
    url: str


class DatasetRef(BaseModel):
    id: int
    name: str


class DatasetDetail(DatasetPublic):
    stats: dict[str, Any] = Field(description="pairs, image sizes, modes, classes with pixel fractions, warnings")
    samples: list[SamplePublic] = Field(description="Thumbnails with the mask overlaid.")
    duplicates: list[DatasetRef] = Field(default_factory=list, description="Datasets uploaded before this one with the "
                                         "same content (every file byte for byte); the upload is kept all the same")
    numbering: dict[str, int] | None = Field(None, description="{first, last, numbered}: the smallest and largest "
                                             "number in the sample keys, over all samples, and how many keys hold one")


class PlanPublic(BaseModel):
    """``sikd plan`` for a stored dataset: a spec for POST /experiments planned from the dataset and the device."""

    spec: dict[str, Any] = Field(description="network, widths, image size, batch, epochs: a spec for POST /experiments")
    fingerprint: dict[str, Any] = Field(description="pairs, median size, aspect, channels, classes, foreground")
    device: dict[str, Any] = Field(description="kind (cuda, cpu), name, memory_gib or cores; source: the live worker "
                                              "planned for, 'described in the request' or 'API host (no worker has "
                                              "reported)'")
    reasons: dict[str, Any] = Field(description="why each value was chosen")
    estimate: dict[str, Any] | None = Field(description="seconds, minutes and basis (steps measured on the workers; "
                                                        "'not measured yet': seconds null); null with measure=false")
    yaml: str = Field(description="the spec as YAML for `sikd run`, the reasons as comments")


# ------------------------------------------------------------------------------------------ experiments
class ExperimentCreate(ExperimentSpec):
    """The body of ``POST /experiments``: an experiment spec (the keys and defaults of ``GET /options``) whose
    ``train_dataset`` and ``eval_datasets`` are dataset ids. A bad value is a 422 whose ``errors`` name the field:
    ``{"loc": ["body", "lr"], "msg": "Input should be greater than 0", "type": "greater_than"}``."""

    model_config = ConfigDict(title="ExperimentCreate", json_schema_extra={"examples": [
        {"name": "phantom-demo", "train_dataset": "1", "eval_datasets": ["2", "3"], "image_size": [96, 96],
         "epochs": 6, "network_kwargs": {"widths": [16, 32, 64, 128]}, "seeds": [0]}]})
    #: The first line of a 422's ``detail`` for this body (then one ``  <field>: <message>`` line per problem).
    error_title: ClassVar[str] = SPEC_ERROR_TITLE

    @model_validator(mode="before")
    @classmethod
    def _sweep_goes_to_sweeps(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sweep" in data:
            raise ValueError("a spec with 'sweep' stands for several experiments: send it to POST /sweeps")
        return data


class PlannedStagePublic(BaseModel):
    """One training stage of a spec's plan (sikd_core.methods.plan.stage_plan): the one answer to which stages a
    spec trains and what each one is."""

    stage: str = Field(description="the stage's name, as the stages' ``kind``: baseline, teacher, student, gin+sikd...")
    seed: int
    role: Literal["plain", "teacher", "student"] = Field(
        description="plain: trained alone; teacher: on class-mean images (never evaluated); student: distilled from "
                    "its seed's teacher (waits for it)")
    method: str | None = Field(description="the method whose model this stage trains (null for the teacher)")
    base: str | None = Field(description="the method without distillation (gin for gin+sikd, baseline for sikd)")
    teacher: str | None = Field(description="the stage this one distils from (teacher), else null")
    epochs: int
    network: str = Field(description="the registered network it trains")


class EstimatePublic(BaseModel):
    """A spec's stage plan and estimated run time (POST /experiments/estimate), in seconds."""

    plan: list[PlannedStagePublic]
    planned_epochs: int = Field(description="epochs of every training stage together (the plan's sum)")
    seconds: float | None = Field(description="queue + training + evaluation; null while a step is not measured yet")
    queue_seconds: float = Field(description="the work left of the experiments ahead, shared among the workers")
    training_seconds: float | None = Field(description="the training stages as the workers' slots run them")
    evaluation_seconds: float | None
    evaluation_basis: str = Field(description="measured (on the workers), or the model's guess")
    stages: list[dict[str, Any]] = Field(description="{stage, seed, epochs, step_seconds, seconds, basis}: basis "
                                         "'measured' (ran here; ', scaled' by the work per step), 'timed on worker "
                                         "W', 'a-priori: ...' or 'not measured yet' (null figures)")
    slots: int = Field(description="stages the workers run at once")
    steps_per_epoch: int
    fixed_seconds: float = Field(description="a stage's time outside its epochs (measured median)")
    images: dict[str, int] = Field(description="train, val, test, cross")
    measured_stages: int = Field(description="finished stages the step costs were measured on")
    ahead: int = Field(description="queued or running experiments")
    timing: str | None = Field(None, description="step timings asked of the workers, and where they stand")


class StagePublic(ORM):
    id: int
    kind: StageKind
    seed: int | None
    status: StageStatus
    progress: float
    epoch: int
    epochs: int
    loss: float | None
    val_dice: float | None
    best_val_dice: float | None
    eta_seconds: float | None
    message: str | None = None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = None
    worker: str | None = None
    attempts: int = 0
    resumed_from_epoch: int | None = None
    error: str | None
    traceback_summary: str | None
    warnings: list[str] = []
    health: list[dict[str, Any]] = Field(default_factory=list, description="Training-health findings of the stage: "
                                         "{code, severity, stage, seed, method, epoch, message, values}")
    reused_from: int | None = Field(None, description="The experiment whose identical stage this one reuses (its "
                                    "model and scores; not trained again; message: 'reused from experiment N')")
    reuse_wait: int | None = Field(None, description="The id of an identical stage still training in another "
                                   "experiment, which this one waits for (then reuses)")


class ExperimentPublic(ORM):
    id: int
    name: str
    owner_id: int
    status: ExperimentStatus
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    progress: float = Field(ge=0, le=1)
    stages: list[StagePublic]
    sweep_id: int | None = Field(None, description="The sweep that created it (GET /sweeps/{sweep_id}), if any")
    sweep_values: dict[str, Any] | None = Field(None, description="Its values of the sweep's settings")
    plan: list[PlannedStagePublic] = Field(
        default_factory=list, description="The spec's stage plan: every training stage, its role, method and epochs "
                                          "(the sum of ``epochs`` is what the experiment trains)")
    summary: dict[str, Any] | None = Field(
        None, description="Of a succeeded experiment: {dice: {method: {intra, cross}}}, the mean Dice on the intra "
                          "test split(s) and over the cross datasets (null: none or not finished)")
    health: dict[str, Any] | None = Field(
        None, description="{status: healthy|unhealthy, findings: [...], models: {'<method>/<seed>': healthy|unhealthy}, "
                          "by_model: {'<method>/<seed>': [findings]}}: the report's findings once evaluated, else the "
                          "stages' so far; a student carries its teacher's findings. The same object the results, "
                          "the Models page and the model cards use")
    tags: list[str] = Field(default_factory=list, description="The owner's labels (PATCH /experiments/{id})")
    note: str | None = Field(None, description="The owner's free-text note (PATCH /experiments/{id})")


class EpochMetricPublic(ORM):
    epoch: int
    attempt: int
    loss: float | None
    seg_loss: float | None
    kd_loss: float | None
    val_dice: float | None
    val_dice_per_class: list[float] | None
    best_val_dice: float | None
    lr: float | None
    train_seconds: float | None


class StageMetrics(BaseModel):
    stage_id: int
    kind: StageKind
    seed: int | None
    status: StageStatus
    epochs: list[EpochMetricPublic]


class ExperimentMetrics(Page[StageMetrics]):
    class_names: list[str]


class ResultRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    method: str
    seed: int
    dataset: str
    split: Literal["intra", "cross"]
    dice: float | None
    iou: float | None
    hd95: float | None
    per_class: dict[str, dict[str, float | None]]


class CaseScore(BaseModel):
    """One model's scores on one case (an image, or a volume): means over the foreground classes, and
    ``per_class`` lists (one value per foreground class) of each metric."""

    model_config = ConfigDict(extra="allow")

    method: str
    seed: int
    dataset: str
    split: Literal["intra", "cross"]
    case: str
    keys: list[str]
    dice: float | None
    iou: float | None
    hd95: float | None
    hd: float | None = None
    per_class: dict[str, list[float | None]]


class ExperimentResults(Page[ResultRow]):
    summary: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    class_names: list[str]
    units: str
    dataset_units: dict[str, str] = {}
    warnings: list[str] = []
    health: dict[str, Any] | None = Field(None, description="{status: healthy|unhealthy, findings: [...], models: "
                                          "{'<method>/<seed>': healthy|unhealthy}, by_model: {'<method>/<seed>': "
                                          "[findings]}} (a student carries its teacher's findings); null for "
                                          "reports made before health checks existed")
    methods: list[str] = Field(default_factory=list, description="the experiment's methods in spec order")
    train_datasets: list[str] = Field(default_factory=list, description="the training sources' names")
    baseline_strength: list[dict[str, Any]] | None = Field(
        None, description="Baseline minus the reference recipe per dataset and split ({dataset, split, n_cases, "
        "dice: {mean_diff, ci_low, ci_high, p_value, p_holm}, below_reference, reference_converged: false when the "
        "reference recipe was still improving at the end of its budget (a lower bound only)}); [] when the experiment trains no "
        "reference (nothing then measures the baseline's strength), null for reports made before it existed. "
        "Comparisons against the baseline carry the same figures as baseline_strength.")
    reused_scores: list[dict[str, Any]] = Field(
        default_factory=list, description="Per model and evaluation set whose per-case scores were taken from an "
        "earlier evaluation of the same model on the same data ({method, seed, dataset, split, reused_from: "
        "{experiment: N}}); the rest were computed")


class OverlayPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    dataset: str
    split: str
    case: str
    key: str
    categories: list[str]
    scores: dict[str, dict[str, float | None]]
    dice_diff: float | None
    file: str
    url: str


class FeaturePublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    dataset: str
    split: str
    key: str
    panels: list[str]
    file: str
    url: str


# ------------------------------------------------------------------------------------------ models
class ModelPublic(ORM):
    id: int
    name: str
    owner_id: int
    experiment_id: int
    stage_id: int
    method: str
    seed: int
    architecture: str
    image_size: list[int]
    num_classes: int
    class_names: list[str]
    best_val_dice: float | None
    size_bytes: int
    created_at: datetime
    reused_from: int | None = Field(None, description="the experiment that trained this model, when this one's stage "
                                    "reused it (the same weights; the card says 'trained in experiment N (reused)')")


class PredictionPublic(BaseModel):
    filename: str
    width: int
    height: int
    class_fractions: dict[str, float]
    mask_values: Literal["0/255", "class index"] = Field(
        description="Binary models give a 0/255 mask, others the class index per pixel.")
    mask_png: str = Field(description="base64 PNG")
    overlay_png: str = Field(description="base64 PNG: the image with the prediction filled and outlined")


class Predictions(BaseModel):
    data: list[PredictionPublic]
    model_id: int

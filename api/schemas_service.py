"""Response bodies of the service's own routes: health (``GET /health``), the form's options (``GET /options``)
and sweeps (``GET /sweeps/{id}``); the experiment and dataset bodies are in :mod:`api.schemas`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas import ExperimentPublic


# ------------------------------------------------------------------------------------------ service
class CheckPublic(BaseModel):
    ok: bool
    detail: str


class WorkersPublic(BaseModel):
    ok: bool
    count: int
    names: list[str]
    #: Per worker name: ``{"accelerator": "cuda"|"cpu", "gpus": N, "gpu_names": [...]}`` (absent for a worker
    #: that does not answer the ``sikd_devices`` command, and in a worker's first seconds, while its device
    #: profile is read in a child process).
    devices: dict[str, dict[str, Any]] = {}


class ComponentPublic(BaseModel):
    """A process ``sikd serve`` supervises: ``up`` or ``restarting``, restarts so far, the last exit code."""

    state: Literal["up", "restarting"]
    restarts: int
    last_exit: int | None
    since: str


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    database: CheckPublic
    broker: CheckPublic
    workers: WorkersPublic
    version: str
    #: Under ``sikd serve``: api, worker and ui with their state; ``None`` when the API runs on its own.
    components: dict[str, ComponentPublic] | None = None


class NetworkOption(BaseModel):
    """A registered network (architecture), for the spec's ``network``."""

    name: str
    description: str
    skip_switch: bool
    defaults: dict[str, Any]
    #: What the SIKD teacher keeps or drops (its skip connections).
    teacher_note: str = ""
    #: The installed distribution a plug-in network comes from ("" for the built-in ones).
    plugin: str = ""


class PresetOption(BaseModel):
    name: str
    description: str
    values: dict[str, Any]


class MethodOption(BaseModel):
    name: str
    description: str
    reference: str
    composable: bool = Field(description="name+sikd is allowed (trained with this method and distilled)")
    networks: list[str] | None = Field(None, description="networks it can train (None: every network)")
    models: list[str] | None = Field(None, deprecated=True,
                                     description="Deprecated: the old name of ``networks`` (the same list), kept for "
                                                 "older clients")


class OptionsPublic(BaseModel):
    networks: list[NetworkOption] = Field(description="The registered networks (the spec's ``network``)")
    models: list[NetworkOption] = Field(
        deprecated=True, description="Deprecated: the old name of ``networks`` (the same list), kept for older "
                                     "clients; ``model`` means a trained model now")
    presets: list[PresetOption]
    methods: list[MethodOption]
    method_names: list[str] = Field(description="every valid entry of spec.methods, compositions included")
    teacher_inputs: list[str]
    spec_defaults: dict[str, Any]
    spec_schema: dict[str, Any]


class SweepPoint(BaseModel):
    """One point of a sweep's chart: a succeeded experiment's mean Dice of one method on one split."""

    experiment_id: int
    values: dict[str, Any] = Field(description="The experiment's values of the swept settings")
    method: str
    split: str = Field(description="intra (the training data's test split) or cross (the unseen datasets)")
    n_cases: int
    dice: float
    ci_low: float | None = Field(description="95% percentile-bootstrap CI of the mean over the cases")
    ci_high: float | None
    health: Literal["healthy", "unhealthy"] = Field(description="unhealthy: a model of this method has findings")


class SweepPublic(BaseModel):
    id: int = Field(description="The sweep's id: its first experiment's id")
    settings: list[str] = Field(description="The swept settings, in the order given")
    experiments: list[ExperimentPublic]
    points: list[SweepPoint] = Field(description="Of the succeeded experiments (sikd_core.sweep.sweep_points)")

"""Bodies of finding experiments again: the tags/note update, the tag list, the paired test between two
experiments' models (the general families are in :mod:`api.schemas`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sikd_service.finder import MAX_TAGS, NOTE_LENGTH, TAG_LENGTH, clean_note, clean_tags


class ExperimentMetaUpdate(BaseModel):
    """``PATCH /experiments/{id}``: what is given is replaced, what is left out stays."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = Field(
        None, max_length=MAX_TAGS * 4,  # repeats are dropped before the real limit is checked
        description=f"Replaces every tag: at most {MAX_TAGS}, each 1 to {TAG_LENGTH} characters (no comma, no '<', "
                    "no control characters); surrounding spaces and repeats are dropped; [] removes them all.",
        examples=[["alpha-sweep", "polyp"]])
    note: str | None = Field(None, max_length=NOTE_LENGTH * 2,
                             description=f"Replaces the note (at most {NOTE_LENGTH} characters once stripped); "
                                         "null or an empty text removes it.")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_tags(v)

    @field_validator("note")
    @classmethod
    def _note(cls, v: str | None) -> str | None:
        return clean_note(v)

    @model_validator(mode="after")
    def _something(self) -> ExperimentMetaUpdate:
        if not self.model_fields_set:
            raise ValueError("give tags, note or both")
        if "tags" in self.model_fields_set and self.tags is None:
            raise ValueError("tags must be a list (give [] to remove every tag)")
        return self


class TagCount(BaseModel):
    tag: str
    count: int = Field(description="How many of your experiments carry it.")


class ModelSide(BaseModel):
    experiment_id: int
    experiment_name: str
    method: str
    seeds: list[int] = Field(description="The seeds of the model whose per-case scores were averaged")
    experiment_health: Literal["healthy", "unhealthy"]
    model_health: Literal["healthy", "unhealthy"] = Field(
        description="unhealthy when a training-health finding is about this model (its teacher's included)")
    findings: list[dict[str, Any]]


class PairedBetween(BaseModel):
    """Model ``a`` minus model ``b`` per shared dataset, paired per case (each model averaged over its seeds)."""

    a: ModelSide
    b: ModelSide
    comparisons: list[dict[str, Any]] = Field(
        description="Per shared dataset, as the results' comparisons: {dataset, split (intra, cross or 'intra vs "
                    "cross'), split_a, split_b, n_cases, a, b, dice: {mean_diff, median_diff, ci_low, ci_high, "
                    "p_value, p_holm, better, worse, ties}, hd95: {...}, p_holm, unhealthy_models}; Holm across the "
                    "shared datasets")
    shared_cases: int = Field(description="(dataset, case) pairs both models scored")
    only_a: int = Field(description="cases of the shared datasets only model a scored")
    only_b: int = Field(description="cases of the shared datasets only model b scored")
    seeds_a: list[int]
    seeds_b: list[int]
    datasets: list[dict[str, Any]] = Field(description="the shared datasets: {name, id}")
    units: dict[str, str] = Field(description="HD95's unit per shared dataset (mm or px)")

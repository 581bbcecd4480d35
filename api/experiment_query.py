"""The Experiments list's search and filters as query parameters (``GET /experiments``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from api.deps import Id
from api.schemas import ExperimentStatus
from sikd_service.errors import ServiceError
from sikd_service.finder import TAG_LENGTH, Filters

#: A network or method name as a filter: what the registries allow in names.
_NAME = r"^[A-Za-z0-9_.+\-]+$"


def experiment_filters(
    status: ExperimentStatus | None = None,
    name: Annotated[str | None, Query(min_length=1, max_length=200,
                                      description="Part of the name (case-insensitive; % and _ are plain text)")] = None,
    tag: Annotated[list[str], Query(max_length=20, description="Only experiments carrying this tag (repeat for "
                                    "several: every one must be there)")] = [],  # noqa: B006 - FastAPI copies it
    dataset: Annotated[Id | None, Query(description="Only experiments trained or evaluated on this dataset (id)")]
    = None,
    network: Annotated[str | None, Query(min_length=1, max_length=100, pattern=_NAME,
                                         description="Only experiments of this network (spec `network`)")] = None,
    method: Annotated[str | None, Query(min_length=1, max_length=100, pattern=_NAME,
                                        description="Only experiments training this method (spec `methods`)")] = None,
    health: Annotated[Literal["healthy", "unhealthy"] | None,
                      Query(description="unhealthy: a training-health finding about one of its models (as the "
                                        "experiment's `health.status` says)")] = None,
) -> Filters:
    tags = [t.strip() for t in tag]
    bad = [t for t in tags if not 1 <= len(t) <= TAG_LENGTH]
    if bad:
        raise ServiceError(422, f"a tag filter has 1 to {TAG_LENGTH} characters; not {bad[0][:60]!r}")
    return Filters(status=status, name=name, tags=tags, dataset=dataset, network=network, method=method,
                   health=health)


ExperimentFilters = Annotated[Filters, Depends(experiment_filters)]

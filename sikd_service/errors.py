"""Errors of the service operations: each carries the HTTP status it maps to and a readable ``detail``.

The service core raises them without knowing HTTP; :mod:`api.errors` turns them into JSON responses.
"""

from __future__ import annotations

from typing import Any

from sikd_core.errors import DatasetError


class ServiceError(Exception):
    """A refused or failed service operation: the HTTP status it maps to, a readable ``detail`` and optional
    extra JSON fields."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def not_found(kind: str, ident: object) -> ServiceError:
    return ServiceError(404, f"{kind} {ident} not found")


def dataset_error(e: DatasetError, status_code: int = 422) -> ServiceError:
    return ServiceError(status_code, e.message, problems=e.problems, files=e.files)


__all__ = ["ServiceError", "dataset_error", "not_found"]

"""What every part of the experiment page reads: the API client and the experiment as loaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ui.client import Client


@dataclass(frozen=True)
class ExperimentView:
    api: Client
    exp: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.exp["id"])

    @property
    def spec(self) -> dict[str, Any]:
        return self.exp["spec"]

    @property
    def status(self) -> str:
        return str(self.exp["status"])

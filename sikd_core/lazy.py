"""Package attributes imported on first use (PEP 562).

The service reads specs, plans, manifests and model cards without PyTorch; the packages that re-export
those names next to PyTorch code (``sikd_core.data``, ``sikd_core.export``, ``sikd_core.methods``) resolve
each name when it is first used, so the API starts without importing torch (a restarted API answers in
about a second instead of five).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``where`` maps each name to the submodule that defines it;
    a resolved name is stored in ``namespace`` (the package's globals) so the next access is a plain lookup."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__

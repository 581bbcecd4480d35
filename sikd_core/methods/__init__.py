"""Training methods as plug-ins: ``baseline``, ``sikd``, ``sdm``, ``gin``, ``maxstyle`` and ``X+sikd``.

See :mod:`sikd_core.methods.registry`; each plug-in module cites its publication and says which defaults
match the authors' code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sikd_core.lazy import lazy_attributes
from sikd_core.methods.registry import (
    SIKD,
    MethodInfo,
    available_methods,
    create_method,
    method_info,
    method_names,
    method_options,
    parse_method,
    register_method,
)

if TYPE_CHECKING:
    from sikd_core.methods.base import MethodTrainer, StepOutput, TrainingMethod

#: Imported on first use: the trainers need PyTorch, the plan and the registry do not (the API reads plans
#: without importing torch at start, so a restarted API answers sooner).
_LAZY = {"MethodTrainer": "base", "StepOutput": "base", "TrainingMethod": "base"}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = ["SIKD", "MethodInfo", "MethodTrainer", "StepOutput", "TrainingMethod", "available_methods",
           "create_method", "method_info", "method_names", "method_options", "parse_method", "register_method"]

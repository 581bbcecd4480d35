"""Training methods as plug-ins: ``baseline``, ``sikd``, ``sdm``, ``gin``, ``maxstyle`` and ``X+sikd``.

See :mod:`sikd_core.methods.registry`; each plug-in module cites its publication and says which defaults
match the authors' code.
"""

from __future__ import annotations

from sikd_core.methods.base import MethodTrainer, StepOutput, TrainingMethod
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

__all__ = ["SIKD", "MethodInfo", "MethodTrainer", "StepOutput", "TrainingMethod", "available_methods",
           "create_method", "method_info", "method_names", "method_options", "parse_method", "register_method"]

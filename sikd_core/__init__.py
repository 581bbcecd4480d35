"""SIKD Studio core library: Shape-Intensity Knowledge Distillation for medical image segmentation.

Pure PyTorch (no web, queue or database imports). The CLI, the worker and the tests all drive the same
entry points: :class:`sikd_core.spec.ExperimentSpec` and :mod:`sikd_core.pipeline`.
"""

from __future__ import annotations

__version__ = "0.1.0"

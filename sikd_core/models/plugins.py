"""A lab's own networks as plug-ins: installed packages declaring entry points in the ``sikd.networks`` group.

Each entry point names a builder ``build(in_channels, num_classes, **kwargs)`` (the contract is in the README,
"A lab's own network as a plug-in"). Optional attributes on the builder declare the rest:

- ``sikd_description``: one line for ``sikd models`` (default: the docstring's first line);
- ``sikd_skip_switch``: ``True`` when the builder takes ``skip_connections: bool`` and the SIKD teacher should be
  built with ``skip_connections=False`` (as the paper's U-Net and TransUNet);
- ``sikd_teacher_note``: what the teacher keeps or drops, shown by ``sikd models``;
- ``sikd_head`` / ``sikd_size_multiple``: when the builder returns a plain ``nn.Module`` rather than a
  :class:`~sikd_core.models.SegmentationModel`, the dotted name of its final 1x1 conv (hooked for the
  penultimate features) and the multiple the input is zero-padded to.

Plug-ins are loaded lazily (the first time the registry is asked for its list or for a name it does not
know) and once. A plug-in that cannot be imported or breaks the contract is skipped with a warning naming it.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

GROUP = "sikd.networks"
log = logging.getLogger("sikd")
_state = {"loaded": False}


class PluginWarning(UserWarning):
    """A ``sikd.networks`` plug-in was skipped."""


def _check_builder(name: str, fn: Any) -> dict[str, Any]:
    if not callable(fn):
        raise TypeError(f"the entry point is a {type(fn).__name__}, not a builder function")
    params = list(inspect.signature(fn).parameters)
    if params[:2] != ["in_channels", "num_classes"]:
        raise TypeError(f"the builder's first parameters must be (in_channels, num_classes); got {params[:2]}")
    skip_switch = bool(getattr(fn, "sikd_skip_switch", False))
    if skip_switch and "skip_connections" not in params:
        raise TypeError("sikd_skip_switch is set but the builder has no skip_connections parameter")
    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    return {
        "description": str(getattr(fn, "sikd_description", "") or (doc[0] if doc else f"plug-in network {name}")),
        "skip_switch": skip_switch,
        "teacher_note": str(getattr(fn, "sikd_teacher_note", "")),
        "head": str(getattr(fn, "sikd_head", "")),
        "size_multiple": int(getattr(fn, "sikd_size_multiple", 1)),
    }


def load_plugins(*, reload: bool = False) -> list[str]:
    """Register the networks of every installed ``sikd.networks`` entry point (once; ``reload`` re-scans, for
    a package installed while the process runs). Returns the names registered by this call."""
    if _state["loaded"] and not reload:
        return []
    _state["loaded"] = True
    from importlib.metadata import entry_points

    from sikd_core.models.registry import MODELS, register_model

    added = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
        where = f"{ep.name!r} ({ep.value}, from {dist})"
        if ep.name in MODELS:
            if MODELS[ep.name].plugin != dist:
                warnings.warn(f"sikd network plug-in {where} skipped: the name is already taken by "
                              f"{MODELS[ep.name].plugin or 'a built-in network'}", PluginWarning, stacklevel=2)
            continue
        try:
            fn = ep.load()
            meta = _check_builder(ep.name, fn)
            register_model(ep.name, meta.pop("description"), plugin=dist, **meta)(fn)
        except Exception as e:  # noqa: BLE001 - any broken plug-in is skipped, never fatal
            warnings.warn(f"sikd network plug-in {where} skipped: {type(e).__name__}: {e}", PluginWarning,
                          stacklevel=2)
            continue
        added.append(ep.name)
        log.debug("sikd network plug-in %s registered", where)
    return added

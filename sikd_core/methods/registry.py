"""Training methods by name, and the ``X+sikd`` compositions (the paper's "X + SIKD" rows).

A method decides how a segmentation network is *trained*: extra training-only heads or decoders,
extra losses, train-time augmentation. Inference always uses the plain segmentation network, so every
method costs the baseline's inference. ``sikd`` (feature distillation from the class-mean teacher) can be
added on top of any method registered ``composable=True``; the teacher does not depend on the method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sikd_core.errors import SpecError

if TYPE_CHECKING:
    from sikd_core.methods.base import TrainingMethod

SIKD = "sikd"
SUFFIX = "+" + SIKD


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    reference: str
    #: ``name+sikd`` is allowed (the student is trained with this method and distilled from the teacher).
    composable: bool
    #: Builds the training-time part ``fn(model, in_channels=, num_classes=)``; None for baseline and sikd.
    builder: Callable[..., TrainingMethod] | None = None
    #: Registered network names this method can train (None: every network).
    networks: tuple[str, ...] | None = None


METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, description: str, reference: str, *, composable: bool = True,
                    networks: tuple[str, ...] | None = None) -> Callable[[Any], Any]:
    """Decorator adding a :class:`TrainingMethod` class (or builder) to the registry."""

    def wrap(fn: Any) -> Any:
        if name in METHODS or "+" in name:
            raise ValueError(f"method name {name!r} is taken or invalid")
        METHODS[name] = MethodInfo(name, description, reference, composable, fn, networks)
        return fn

    return wrap


METHODS["baseline"] = MethodInfo(
    "baseline", "The plain network trained with the segmentation loss only (the paper's U-Net row).",
    "Ronneberger et al., U-Net, MICCAI 2015", composable=False)
METHODS[SIKD] = MethodInfo(
    SIKD, "Shape-intensity knowledge distillation: a student distilled from a teacher trained on "
    "class-wise averaged images (alpha * MSE on penultimate features).",
    "Dong, Du & Xu, Front. Comput. Sci. 19(9):199705, 2025 (arXiv:2409.17503)", composable=False)


REFERENCE = "reference"
#: The registered network the reference recipe trains (whatever the spec's ``model``).
REFERENCE_NETWORK = "dynunet"
METHODS[REFERENCE] = MethodInfo(
    REFERENCE, "An independent standard recipe in the spirit of nnU-Net (its own DynUNet planned from the image "
    "size, Dice+CE, SGD with Nesterov momentum and a polynomial schedule, nnU-Net-like augmentation) on the same "
    "splits and budget: it tells whether the baseline is as strong as the field's standard recipe makes it. "
    "Reported as baseline strength, never distilled.",
    "Isensee et al., nnU-Net, Nature Methods 18:203-211, 2021", composable=False)


def available_methods() -> list[str]:
    """Registered names: baseline, sikd, the plug-ins in :data:`PLUGINS` order, then any others."""
    _load_plugins()
    order = ["baseline", SIKD] + [p for p in PLUGINS if p in METHODS] + [REFERENCE]
    return order + [n for n in METHODS if n not in order]


def method_names() -> list[str]:
    """Every valid entry of ``spec.methods``: the registered names and the ``X+sikd`` compositions."""
    names = available_methods()
    return names + [f"{n}{SUFFIX}" for n in names if METHODS[n].composable]


def method_info(name: str) -> MethodInfo:
    _load_plugins()
    try:
        return METHODS[name]
    except KeyError:
        raise SpecError(f"unknown method {name!r}; known methods: {', '.join(method_names())}") from None


def parse_method(name: str) -> tuple[str, bool]:
    """``"gin+sikd"`` -> ``("gin", True)``; ``"sikd"`` -> ``("baseline", True)``; checks the name.

    Raises :class:`SpecError` naming the known methods for an unknown name or composition.
    """
    _load_plugins()
    if not isinstance(name, str) or not name:
        raise SpecError(f"a method name must be a non-empty string; known methods: {', '.join(method_names())}")
    if name == SIKD:
        return "baseline", True
    if name.endswith(SUFFIX):
        base = name[: -len(SUFFIX)]
        info = METHODS.get(base)
        if info is None or not info.composable:
            raise SpecError(f"unknown composition {name!r}: '+sikd' goes after a composable method; "
                            f"known methods: {', '.join(method_names())}")
        return base, True
    if name not in METHODS:
        raise SpecError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    return name, False


def method_options() -> list[dict[str, Any]]:
    """What ``GET /options`` lists: name, one-line description, reference, whether ``+sikd`` composes and the
    networks it can train (also under ``models``, their old name, for older clients)."""
    out = []
    for i in (method_info(n) for n in available_methods()):
        networks = list(i.networks) if i.networks else None
        out.append({"name": i.name, "description": i.description, "reference": i.reference,
                    "composable": i.composable, "networks": networks, "models": networks})
    return out


def create_method(name: str, model: Any, *, in_channels: int, num_classes: int) -> TrainingMethod:
    """The training-time part of a registered plug-in method (not baseline or sikd)."""
    info = method_info(name)
    if info.builder is None:
        raise SpecError(f"method {name!r} has no training plug-in (it is trained by the plain trainer)")
    return info.builder(model, in_channels=in_channels, num_classes=num_classes)


#: Plug-in modules, imported on first use in this order (the order of GET /options and `sikd methods`).
PLUGINS = ("sdm", "gin", "maxstyle")


def _load_plugins() -> None:
    """Import the plug-in modules once (they register themselves)."""
    import importlib

    for mod in PLUGINS:
        importlib.import_module(f"sikd_core.methods.{mod}")

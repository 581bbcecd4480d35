"""The dashboard's shared vocabulary: numbers, p-values, durations and sizes for people, method and stage labels,
statuses and their icons, the colours of classes and contours.

Pure functions (no Streamlit, no HTTP), like the shaping modules that build on them, one per page or section:
``experiments_data`` (the list, stages, ETAs), ``scores_data`` (results tables), ``compare_data`` (Compare),
``datasets_data`` (Datasets), ``new_experiment_data`` (the form), ``models_data`` (Models); ``health`` for
training health and ``figures`` for the charts' colours and export.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ui.health import WITH_WARNINGS

STAGE_KINDS = ("baseline", "teacher", "student", "evaluation")

ACTIVE = ("queued", "running")

METHOD_LABELS = {"baseline": "Baseline", "sikd": "SIKD", "gin": "GIN", "sdm": "SDM", "maxstyle": "MaxStyle",
                 "reference": "Reference"}

STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
                "pending": ":material/more_horiz:", WITH_WARNINGS: ":material/warning:",
                "stopping": ":material/stop_circle:"}

#: Outline colours of the overlays: the ground truth, the first and the second contoured method (the API draws
#: them with sikd_core.viz.CONTOUR_COLORS["ground_truth"] and sikd_service.case_view.PAIR_COLOURS).
CONTOUR_COLORS = {"ground truth": "#00e600", "first": "#ff3c3c", "second": "#288cff"}

#: Class colours of masks and fills (index = class; sikd_core.viz.CLASS_COLORS as hex).
CLASS_COLORS = ("#000000", "#ff5050", "#50c878", "#508cff", "#ffc83c", "#c85aff", "#3cdcdc", "#ff8c28", "#a0a0a0")

BETTER = "#1a7f37"

WORSE = "#cf222e"

TEACHER_INPUT_LABELS = {"class_mean": "class-wise mean image (SIKD)", "image": "the image itself (ablation)",
                        "label_map": "the label map (ablation)"}


def finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v: Any, digits: int = 3, sign: bool = False) -> str:
    f = finite(v)
    if f is None:
        return "–"
    return f"{f:+.{digits}f}" if sign else f"{f:.{digits}f}"


def fmt_p(v: Any) -> str:
    """A p-value as the report prints it: ``<0.001`` below a thousandth, else three decimals."""
    f = finite(v)
    if f is None:
        return "–"
    return "<0.001" if f < 0.001 else f"{f:.3f}"


def method_label(method: str) -> str:
    """``sikd`` -> ``SIKD``, ``gin+sikd`` -> ``GIN+SIKD``; unknown names stay as they are."""
    return "+".join(METHOD_LABELS.get(part, part) for part in str(method).split("+"))


def comparison_pair(c: dict[str, Any]) -> tuple[str, str]:
    """``(method, reference)`` of a paired comparison: its ``method``/``reference`` keys, else the older
    ``a``/``b``, else SIKD against the baseline (reports written before methods were named)."""
    return (str(c.get("method") or c.get("a") or "sikd"), str(c.get("reference") or c.get("b") or "baseline"))


def ci_sign(entry: dict[str, Any] | None, higher_better: bool) -> int:
    """+1 where a paired difference is better and its 95% CI excludes 0, -1 where it is worse and the CI
    excludes 0, 0 otherwise (no CI, or a CI that includes 0: not a demonstrated difference)."""
    if not entry:
        return 0
    d, lo, hi = finite(entry.get("mean_diff")), finite(entry.get("ci_low")), finite(entry.get("ci_high"))
    if d is None or lo is None or hi is None or lo <= 0 <= hi:
        return 0
    return 1 if (d > 0) == higher_better else -1


def fmt_seconds(s: float | None) -> str:
    """A duration for people: ``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if s is None or not math.isfinite(s):
        return "–"
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def parse_time(v: str | None) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def stage_status(stage: dict[str, Any], experiment_status: str | None = None) -> str:
    """A stage's status to show: a stage still ``running`` in an experiment that was cancelled (or failed) is
    ``stopping`` (it stops within one training step, then the worker records it)."""
    if stage.get("status") == "running" and experiment_status is not None and experiment_status not in ACTIVE:
        return "stopping"
    return str(stage.get("status"))


def stage_label(stage: dict[str, Any]) -> str:
    return stage["kind"] if stage.get("seed") is None else f"{stage['kind']} (seed {stage['seed']})"


def train_ids(spec: dict[str, Any]) -> list[str]:
    """The spec's training datasets as a list of ids (``train_dataset`` is one id or a list of them)."""
    v = spec.get("train_dataset")
    if v is None or v == "":
        return []
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def diff(a: Any, b: Any) -> float | None:
    x, y = finite(a), finite(b)
    return x - y if x is not None and y is not None else None

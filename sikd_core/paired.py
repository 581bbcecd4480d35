"""Two models of different experiments compared on the images both scored: paired per case, as within an
experiment.

Each model's per-case scores (``eval/cases.json`` records of one method, any seeds) are averaged over its seeds
per case; the cases both models scored (same dataset, same case) are then compared by the report's own
machinery (:func:`sikd_core.report.paired_comparisons`: mean difference, bootstrap 95% CI, Wilcoxon p) and
Holm-adjusted across the shared datasets (:func:`sikd_core.report.add_holm`). Averaging over seeds first makes
two experiments with different seeds comparable; with the same seeds it gives the same per-case differences
as pairing seed by seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from sikd_core.report import add_holm, paired_comparisons

METRICS = ("dice", "hd95")


def _per_case(cases: Iterable[dict[str, Any]]) -> tuple[dict[tuple[str, str], dict[str, float]], dict[str, str],
                                                          set[int]]:
    """``{(dataset, case): {metric: mean over seeds}}``, the split of each dataset, and the seeds seen."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    splits: dict[str, str] = {}
    seeds: set[int] = set()
    for c in cases:
        for m in METRICS:
            v = c.get(m)
            values[(c["dataset"], c["case"])][m].append(float("nan") if v is None else float(v))
        splits.setdefault(c["dataset"], c["split"])
        seeds.add(int(c["seed"]))
    means = {k: {m: float(np.mean(v[m])) for m in METRICS} for k, v in values.items()}
    return means, splits, seeds


def split_label(split_a: str, split_b: str) -> str:
    """``intra`` or ``cross`` when both experiments see the dataset so, else ``intra vs cross`` (A's first)."""
    return split_a if split_a == split_b else f"{split_a} vs {split_b}"


def compare_models(a_cases: Iterable[dict[str, Any]], b_cases: Iterable[dict[str, Any]], *, a: str = "A",
                   b: str = "B") -> dict[str, Any]:
    """Model ``a`` (its per-case records ``a_cases``) minus model ``b`` on the cases both scored, per dataset.

    Returns ``{comparisons, shared_cases, only_a, only_b, seeds_a, seeds_b}``: ``comparisons`` are
    :func:`~sikd_core.report.paired_comparisons` entries (``a``/``b`` named as given, ``split`` as
    :func:`split_label`, ``split_a``/``split_b``, ``p_holm`` across the datasets), ``shared_cases`` the number
    of (dataset, case) pairs compared, ``only_a``/``only_b`` those scored by one model alone."""
    if a == b:
        raise ValueError("the two models need different labels")
    mean_a, splits_a, seeds_a = _per_case(a_cases)
    mean_b, splits_b, seeds_b = _per_case(b_cases)
    shared = sorted(set(mean_a) & set(mean_b))
    records = []
    for dataset, case in shared:
        split = split_label(splits_a[dataset], splits_b[dataset])
        for label, means in ((a, mean_a), (b, mean_b)):
            records.append({"method": label, "seed": 0, "dataset": dataset, "split": split, "case": case,
                            **means[(dataset, case)]})
    comparisons = paired_comparisons(records, a=a, b=b)
    add_holm(comparisons)
    for c in comparisons:
        c["split_a"], c["split_b"] = splits_a[c["dataset"]], splits_b[c["dataset"]]
    return {"comparisons": comparisons, "shared_cases": len(shared), "only_a": len(set(mean_a) - set(mean_b)),
            "only_b": len(set(mean_b) - set(mean_a)), "seeds_a": sorted(seeds_a), "seeds_b": sorted(seeds_b)}

"""Shaping several experiments for the Compare page: the settings that differ, readable specs, scores side by
side (long form, the table, intra vs cross bars). Pure functions on the API's JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ui.formatting import diff, finite, fmt, method_label, train_ids
from ui.scores_data import METRICS, pick_class


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def spec_differences(specs: Sequence[dict[str, Any]], ignore: Iterable[str] = ("name",)) -> list[str]:
    """Keys whose values differ between the specs (a key missing from one spec counts as differing)."""
    if len(specs) < 2:
        return []
    skip = set(ignore)
    keys: list[str] = []
    for s in specs:
        keys += [k for k in s if k not in keys and k not in skip]
    return [k for k in keys if len({_canon(s.get(k)) for s in specs}) > 1]


def setting_value(spec: dict[str, Any], key: str) -> Any:
    """A spec value as a plot coordinate: numbers stay numbers, anything else becomes text."""
    v = spec.get(key)
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return v
    return v if isinstance(v, str) else _canon(v)


def readable_spec(spec: dict[str, Any], dataset_names: dict[str, str]) -> dict[str, Any]:
    """A spec for people: dataset ids become their names, lists become ``a, b``, dicts ``k=v``."""
    def name(d: Any) -> str:
        return dataset_names.get(str(d), f"#{d}")

    out: dict[str, Any] = {}
    for k, v in spec.items():
        if k == "train_dataset":
            v = " + ".join(name(d) for d in train_ids(spec))
        elif k == "eval_datasets":
            v = ", ".join(name(d) for d in v or []) or "none"
        elif isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items()) or "–"
        out[k] = v
    return out


def intra_cross_frame(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per experiment and method: ``metric`` on the intra test split and averaged over the cross datasets
    (with the mean of the seed std as the error bar), for grouped bars."""
    if long.empty:
        return pd.DataFrame(columns=["Experiment", "Method", "Split", metric, f"{metric} std", "Datasets"])
    df = long.assign(Split=long["Split"].where(long["Split"] == "intra", "cross (mean)"))
    out = df.groupby(["Experiment", "ID", "Method", "Split"], sort=False, as_index=False).agg(
        **{metric: (metric, "mean"), f"{metric} std": (f"{metric} std", "mean"),
           "Datasets": ("Dataset", lambda d: ", ".join(dict.fromkeys(d)))})
    return out.sort_values(["ID", "Method", "Split"], key=lambda c: c != "intra" if c.name == "Split" else c,
                           kind="stable").drop(columns="ID").reset_index(drop=True)


def compare_frame(results: dict[int, dict[str, Any]], experiments: dict[int, dict[str, Any]],
                  class_name: str | None = None) -> pd.DataFrame:
    """Long form: one row per (experiment, dataset, split, method) with Dice/IoU/HD95 mean and std."""
    rows = []
    for exp_id, res in results.items():
        exp = experiments[exp_id]
        for s in res.get("summary", []):
            src = pick_class(s, class_name)
            if src is None:
                continue
            row = {"Experiment": f"#{exp_id} {exp['name']}", "ID": exp_id, "Dataset": s["dataset"],
                   "Split": s["split"], "Method": method_label(s["method"]),
                   "Seeds": s.get("n_seeds", 1)}
            for key, label, _, _ in METRICS:
                row[label] = finite(src.get(f"{key}_mean"))
                row[f"{label} std"] = finite(src.get(f"{key}_std"))
            rows.append(row)
    return pd.DataFrame(rows, columns=["Experiment", "ID", "Dataset", "Split", "Method", "Seeds", "Dice",
                                       "Dice std", "IoU", "IoU std", "HD95", "HD95 std"])


def compare_table(long: pd.DataFrame, metric: str, varying: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """Experiments as rows (with the settings that differ), then per ``dataset (split)`` the baseline, SIKD
    and their difference Δ (SIKD − baseline) of ``metric``, formatted."""
    if long.empty:
        return pd.DataFrame()
    long = long.assign(Set=long["Dataset"] + " (" + long["Split"] + ")")
    sets = list(dict.fromkeys(long.sort_values("Split", key=lambda c: c != "intra", kind="stable")["Set"]))
    digits = 2 if metric == "HD95" else 3
    ids = list(dict.fromkeys(long["ID"]))
    cols: dict[str, list[str]] = {}
    for name in sets:
        part = long[long["Set"] == name]
        values = {m: part[part["Method"] == m].set_index("ID")[metric] for m in part["Method"].unique()}
        for m, v in values.items():
            cols[f"{name} · {m}"] = [fmt(v.get(i), digits) for i in ids]
        if {"Baseline", "SIKD"} <= set(values):
            cols[f"{name} · Δ"] = [fmt(diff(values["SIKD"].get(i), values["Baseline"].get(i)), digits, sign=True)
                                   for i in ids]
    names = long.drop_duplicates("ID").set_index("ID")["Experiment"]
    out = pd.DataFrame({"Experiment": [names[i] for i in ids],
                        **{k: [_show(varying.get(i, {}).get(k)) for i in ids]
                           for k in dict.fromkeys(k for v in varying.values() for k in v)},
                        **cols}, index=pd.Index(ids, name="ID"))
    return out


def _show(v: Any) -> str:
    return v if isinstance(v, str) else _canon(v)

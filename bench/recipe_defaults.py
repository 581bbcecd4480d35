"""Which default recipe makes our baseline as strong as the standard one? Measured side by side in one run.

For each training dataset (Kvasir-SEG and BUSI by default) this trains, on the same split and budget:

- ``reference``: the independent nnU-Net-like recipe (``sikd_core.methods.reference``), in the variants of
  ``REFERENCE_VARIANTS`` (its optimiser at small budgets is one of the choices measured here, on the validation
  splits); every other run is compared with the variant the product uses (``RECIPE``);
- our baseline (the paper's U-Net) under each candidate recipe of ``CANDIDATES`` (loss, optimiser settings,
  augmentation),

and prints, per dataset, the intra-dataset test Dice of each (and its best validation Dice) with the paired
difference to the reference (per-case, bootstrap 95% CI). Only the training dataset's own splits are used:
the cross-dataset sets are never looked at while choosing (they are the evidence, not the tuning set).

    python bench/recipe_defaults.py --out runs/recipe_defaults                 # the documented configuration
    python bench/recipe_defaults.py --out /tmp/rd --smoke                      # tiny, proves the script

Re-running with the same --out resumes (finished stages are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.methods import reference as ref_recipe
from sikd_core.pipeline import ExperimentRun
from sikd_core.report import paired_comparisons
from sikd_core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SIKD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS = {"kvasir-seg": "polyp/kvasir-seg", "busi": "breast-us/busi"}
#: The benchmark size (bench/methods_cross.py, bench/polyp_cross.py) with a longer budget.
BUDGET: dict[str, Any] = {"image_size": 64, "widths": [16, 32, 64, 128], "epochs": 20, "steps_per_epoch": 20,
                          "batch_size": 8, "seeds": [0]}
SMOKE: dict[str, Any] = {"image_size": 32, "widths": [4, 8, 16], "epochs": 1, "steps_per_epoch": 2,
                         "batch_size": 4, "seeds": [0]}
#: Our baseline's candidate recipes: spec keys (the paper's is the first).
CANDIDATES: dict[str, dict[str, Any]] = {
    "paper (ce, adam 2e-3)": {"loss": "ce", "lr": 2e-3},
    "dice_ce, adam 2e-3": {"loss": "dice_ce", "lr": 2e-3},
    "dice_ce, adam 5e-3": {"loss": "dice_ce", "lr": 5e-3},
}
#: The reference's optimiser variants (RECIPE keys).
REFERENCE_VARIANTS: dict[str, dict[str, Any]] = {
    "sgd 0.01 nesterov 0.99 (nnU-Net)": {"optimizer": "sgd", "lr": 0.01},
    "adam 1e-3": {"optimizer": "adam", "lr": 1e-3},
    "adam 3e-3": {"optimizer": "adam", "lr": 3e-3},
    "adam 1e-2": {"optimizer": "adam", "lr": 1e-2},
}


def product_variant() -> str:
    """The variant the product's reference uses (``sikd_core.methods.reference.RECIPE``)."""
    for label, v in REFERENCE_VARIANTS.items():
        if all(ref_recipe.RECIPE[k] == x for k, x in v.items()):
            return label
    raise SystemExit(f"the product's reference recipe {ref_recipe.RECIPE} is none of REFERENCE_VARIANTS")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def run(data: Path, out: Path, budget: dict[str, Any], limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cache = out / "cache"
    for name, rel in DATASETS.items():
        folder = data / rel
        if not folder.is_dir():
            raise SystemExit(f"dataset folder not found: {folder} (set --data or SIKD_SHARED_DATASETS)")
        if limit:
            from methods_cross import subset_folder  # bench/ is on sys.path when run as a script

            folder = subset_folder(folder, out / "data" / name, limit)
        common = dict(train_dataset=str(folder), image_size=budget["image_size"], epochs=budget["epochs"],
                      steps_per_epoch=budget["steps_per_epoch"], batch_size=budget["batch_size"],
                      seeds=budget["seeds"], network="unet", network_kwargs={"widths": budget["widths"]},
                      feature_maps=0, save_predictions=False, device="cpu")
        runs: list[tuple[str, ExperimentRun, str, dict[str, Any]]] = []
        for label, variant in REFERENCE_VARIANTS.items():
            spec = parse_spec(dict(common, name=f"reference {label}", methods=["reference"]))
            runs.append((f"reference: {label}", ExperimentRun(spec, out / name / f"ref_{_slug(label)}", cache_dir=cache),
                         "reference", variant))
        for label, keys in CANDIDATES.items():
            spec = parse_spec(dict(common, name=f"baseline {label}", methods=["baseline"], **keys))
            runs.append((f"baseline: {label}", ExperimentRun(spec, out / name / f"base_{_slug(label)}", cache_dir=cache),
                         "baseline", {}))
        cases_by_run: dict[str, list[dict[str, Any]]] = {}
        for label, exp, method, variant in runs:
            saved = dict(ref_recipe.RECIPE)
            ref_recipe.RECIPE.update(variant)
            try:
                records = [exp.run_stage(stage, seed) for stage, seed in exp.spec.stages()]
                report = exp.evaluate() if not (exp.workdir / "report.json").exists() else \
                    json.loads((exp.workdir / "report.json").read_text())
                seconds = sum(r["seconds"] for r in records)  # training time (also of a resumed, finished run)
            finally:
                ref_recipe.RECIPE.clear()
                ref_recipe.RECIPE.update(saved)
            cases = json.loads((exp.workdir / "eval" / "cases.json").read_text())
            cases_by_run[label] = [dict(c, method=label) for c in cases]
            intra = [s for s in report["summary"] if s["split"] == "intra"][0]
            vals = [s.get("best_val_dice") for s in report["stages"]]
            rows.append({"dataset": name, "run": label, "method": method, "intra_dice": intra["dice_mean"],
                         "best_val_dice": float(np.mean([v for v in vals if v is not None])) if any(vals) else None,
                         "seconds": seconds, "health": report["health"]["status"]})
            print(f"{name:11s} {label:40s} intra Dice {intra['dice_mean']:.3f}  best val "
                  f"{rows[-1]['best_val_dice'] if rows[-1]['best_val_dice'] is None else round(rows[-1]['best_val_dice'], 3)}"
                  f"  {report['health']['status']}  ({seconds:.0f} s)", flush=True)
        best_ref = f"reference: {product_variant()}"  # the product's reference (RECIPE), chosen on validation
        for r in rows:
            if r["dataset"] != name or r["run"] == best_ref:
                continue
            comp = paired_comparisons(cases_by_run[r["run"]] + cases_by_run[best_ref], a=r["run"], b=best_ref)
            d = comp[0]["dice"]
            r["vs_reference"] = {"reference": best_ref, "mean_diff": d["mean_diff"], "ci_low": d["ci_low"],
                                 "ci_high": d["ci_high"]}
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Dataset | Run | intra test Dice | best val Dice | − reference [95% CI] | health | training (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        v = r.get("vs_reference")
        diff = f"{v['mean_diff']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]" if v else "(the product's reference)"
        bv = "–" if r["best_val_dice"] is None else f"{r['best_val_dice']:.3f}"
        lines.append(f"| {r['dataset']} | {r['run']} | {r['intra_dice']:.3f} | {bv} | {diff} | {r['health']} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--smoke", action="store_true", help="tiny budget and 40 images: proves the script")
    ap.add_argument("--epochs", type=int, help="override the budget's epochs")
    args = ap.parse_args()
    budget = dict(SMOKE if args.smoke else BUDGET)
    if args.epochs:
        budget["epochs"] = args.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"budget {budget}; torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor()}",
          flush=True)
    rows = run(args.data, args.out, budget, 40 if args.smoke else None)
    text = table(rows)
    print(text)
    (args.out / "results.json").write_text(json.dumps({"budget": budget, "rows": rows}, indent=1))
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""At what budget has the reference recipe converged, and is our baseline as strong as it there? Side by side.

A comparison is evidence only when its baseline is as strong as the field's standard recipe makes it, and the
product's ``reference`` method is that yardstick only once it has converged: an unconverged reference bounds
the baseline from below, nothing more (the health finding ``reference_not_converged``). This trains, per
training dataset (Kvasir-SEG and BUSI) and per budget (``--epochs``, 20 steps each), one experiment with our
baseline under the standard recipe (Dice+CE, Adam 5e-3, the dashboard preset's) and the reference, on the same
split, and prints per budget:

- the intra-dataset test Dice of each, and baseline minus reference (paired per case, bootstrap 95% CI);
- each model's validation-Dice trend at the end of its budget (mean of the last quarter of epochs minus the
  quarter before; the reference counts as converged at a gain of at most 0.01, ``sikd_core.health``), and what
  its test Dice gained over the previous budget (with a polynomial schedule the last quarter also gains from the
  annealing, so the gain from a longer budget is the plainer test);
- every model's health and the training time.

Only the training dataset's own splits are used: cross-dataset sets are never looked at (they are the evidence,
not the tuning set).

    python bench/reference_budget.py --out runs/reference_budget                 # the documented configuration
    python bench/reference_budget.py --out /tmp/rb --smoke                        # tiny: proves the script

Data: ../shared/datasets (or --data / SIKD_SHARED_DATASETS). Re-running with the same --out resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods_cross import (  # noqa: E402
    DEFAULT_DATA,
    banner,
    missing_folder,
    record_settings,
    run_all,
    subset_folder,
    write_tables,
)

from sikd_core.health import REFERENCE_STILL_RISING, still_rising  # noqa: E402
from sikd_core.methods.registry import REFERENCE  # noqa: E402
from sikd_core.pipeline import ExperimentRun  # noqa: E402
from sikd_core.spec import parse_spec  # noqa: E402

DATASETS = {"kvasir-seg": "polyp/kvasir-seg", "busi": "breast-us/busi"}
#: The benchmark size of bench/methods_cross.py, at longer budgets (epochs of 20 steps).
SETTINGS: dict[str, Any] = {
    "image_size": 64, "widths": [16, 32, 64, 128], "epochs": [20, 50, 100], "steps_per_epoch": 20, "batch_size": 8,
    "lr": 5e-3, "recipe": "standard", "augment": True, "seeds": [0], "train_limit": None,
}
SMOKE: dict[str, Any] = {
    "image_size": 32, "widths": [4, 8, 16], "epochs": [4, 8], "steps_per_epoch": 2, "batch_size": 4,
    "lr": 5e-3, "recipe": "standard", "augment": True, "seeds": [0], "train_limit": 30,
}
METHODS = ["baseline", REFERENCE]


def build(data: Path, out: Path, s: dict[str, Any], device: str, reuse: list[Path] | None = None,
          datasets: list[str] | None = None) -> list[tuple[str, int, ExperimentRun]]:
    """One experiment (baseline and reference) per dataset and budget; stages and scores identical (by key) to
    finished ones in earlier --out folders (``reuse``) are linked, not trained."""
    runs = []
    for name, rel in DATASETS.items():
        if datasets and name not in datasets:
            continue
        folder = subset_folder(data / rel, out / "data" / name, s["train_limit"])
        for epochs in s["epochs"]:
            spec = parse_spec(dict(
                name=f"reference budget {name} {epochs}x{s['steps_per_epoch']}", train_dataset=str(folder),
                image_size=s["image_size"], epochs=epochs, steps_per_epoch=s["steps_per_epoch"],
                batch_size=s["batch_size"], lr=s["lr"], augment=s["augment"], recipe=s["recipe"], device=device,
                network="unet", network_kwargs={"widths": s["widths"]}, seeds=s["seeds"], methods=METHODS,
                feature_maps=0, save_predictions=False))
            roots = [r / name for r in reuse or []]
            runs.append((name, epochs, ExperimentRun(spec, out / name / f"e{epochs}", reuse_roots=roots)))
    return runs


def row(name: str, epochs: int, exp: ExperimentRun) -> dict[str, Any]:
    """The figures of one finished experiment (its report and stage records)."""
    report = json.loads((exp.workdir / "report.json").read_text())
    intra = {s["method"]: s for s in report["summary"] if s["split"] == "intra"}
    strength = [b for b in report["baseline_strength"] if b["split"] == "intra"][0]
    trends: dict[str, list[dict[str, float] | None]] = {m: [] for m in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    for stage, seed in exp.spec.stages():
        rec = exp.stage_record(stage, seed) or {}
        trends[stage].append(still_rising(rec.get("history") or []))
        seconds[stage] += float(rec.get("seconds") or 0.0)
    d = strength["dice"]
    return {"dataset": name, "epochs": epochs, "steps": epochs * exp.spec.steps_per_epoch,
            "dice": {m: intra[m]["dice_mean"] for m in METHODS},
            "baseline_minus_reference": {k: d[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value")},
            "below_reference": strength["below_reference"], "reference_converged": strength["reference_converged"],
            "trend_gain": {m: [t["gain"] if t else None for t in ts] for m, ts in trends.items()},
            "health": report["health"]["models"], "findings": [f["code"] for f in report["health"]["findings"]],
            "seconds": seconds}


def table(rows: list[dict[str, Any]]) -> str:
    def gains(v: list[float | None]) -> str:
        return ", ".join("–" if g is None else f"{g:+.3f}" for g in v)

    lines = [f"Trend = validation Dice of the last quarter of epochs minus the quarter before, per seed (the reference "
             f"counts as converged at <= {REFERENCE_STILL_RISING:g}); Δ budget = test Dice minus that at the previous "
             "budget (a longer budget that still pays is the plainer sign of a recipe not yet converged).", "",
             "| Dataset | Steps | Reference Dice | Δ budget | Trend | Converged | Baseline Dice | Δ budget | Trend | "
             "Baseline − reference [95% CI] | Within 0.02 | Health findings | Training s (baseline / reference) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    previous: dict[str, dict[str, float]] = {}
    for r in rows:
        d = r["baseline_minus_reference"]
        codes = sorted(set(r["findings"]))  # e.g. reference_not_converged, baseline_below_reference
        before = previous.get(r["dataset"])
        step = {m: "–" if before is None else f"{r['dice'][m] - before[m]:+.3f}" for m in METHODS}
        previous[r["dataset"]] = r["dice"]
        lines.append(
            f"| {r['dataset']} | {r['steps']} | {r['dice'][REFERENCE]:.3f} | {step[REFERENCE]} | "
            f"{gains(r['trend_gain'][REFERENCE])} | {'yes' if r['reference_converged'] else 'no'} | "
            f"{r['dice']['baseline']:.3f} | {step['baseline']} | {gains(r['trend_gain']['baseline'])} | "
            f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | "
            f"{'yes' if d['mean_diff'] >= -0.02 else 'no'} | {', '.join(codes) if codes else 'no finding'} | "
            f"{r['seconds']['baseline']:.0f} / {r['seconds'][REFERENCE]:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding breast-us/ and polyp/")
    p.add_argument("--out", required=True)
    p.add_argument("--smoke", action="store_true", help="tiny settings: proves the script, measures nothing")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, nargs="+", help="budgets to train (epochs of steps_per_epoch steps)")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="only these training datasets")
    p.add_argument("--reuse", nargs="*", default=[], help="earlier --out folders of this script whose finished "
                   "stages are linked instead of trained (e.g. to add a longer budget to a finished run)")
    args = p.parse_args(argv)
    s = dict(SMOKE if args.smoke else SETTINGS)
    for key in ("epochs", "seeds"):
        if getattr(args, key):
            s[key] = sorted(set(getattr(args, key)))
    data, out = Path(args.data), Path(args.out)
    error = missing_folder(data, list(DATASETS.values())) or record_settings(out, s)
    if error:
        print(error, file=sys.stderr)
        return 2
    runs = build(data, out, s, args.device, [Path(r) for r in args.reuse], args.datasets)
    print(banner("reference budget", args.smoke, {n: e for n, _, e in runs}, s, f"methods: {METHODS}"), flush=True)
    t0 = time.monotonic()
    # methods_cross's loop: seed by seed over every budget, each stage trained or linked (said), then evaluated
    run_all({f"{name}/{epochs * s['steps_per_epoch']} steps": exp for name, epochs, exp in runs}, s["seeds"])
    rows = [row(name, epochs, exp) for name, epochs, exp in runs]
    (out / "results.json").write_text(json.dumps({"settings": s, "rows": rows}, indent=1))
    write_tables(out, table(rows), t0, f"; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

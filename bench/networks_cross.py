"""Evidence benchmark: SIKD on networks beyond the paper's U-Net (Kvasir-SEG -> CVC-ClinicDB).

The paper's claim is that SIKD improves any segmentation network at no inference cost. For each network below,
one experiment trains its baseline and SIKD (a class-mean teacher of the same architecture, without skip
connections where the paper drops them: U-Net and TransUNet; with them otherwise, as ``sikd networks`` says, and
the student with alpha x feature MSE) on Kvasir-SEG, scores them on its test split (intra) and on CVC-ClinicDB,
never seen in training (cross), for each seed. The paper's U-Net is the anchor.

A comparison is evidence only when the baseline is as strong as the field's standard recipe makes it: every seed
also trains the ``reference`` method once (an independent nnU-Net-like recipe: DynUNet planned from the image
size, widths 16-128, nnU-Net's Dice+CE, its own optimiser and augmentation; same split and budget), and each
network's baseline is compared with it, paired per case.

The settings are ``bench/methods_cross.py``'s (64 px, batch 8, the standard recipe at Adam 5e-3, alpha 2) at
this benchmark's published budget, 20 epochs x 20 steps (400 steps: methods_cross now trains 1 000; a run of this
one at 1 000 steps is ``--epochs 50``), fixed before the run; every network's widths span 16-128 (TransUNet: a 4-layer ViT with
hidden size 128 so that it trains on a CPU); nothing was tuned on the cross-dataset scores. Finished stages of a
``bench/methods_cross.py`` run with the same settings (``--reuse``) are linked instead of trained (stage keys).

    python bench/networks_cross.py --out runs/networks_cross --reuse runs/methods_cross/polyp
    python bench/networks_cross.py --out /tmp/smoke --smoke          # tiny: proves the script end to end

Data: ../shared/datasets/polyp (research/educational use only; see its README). Re-running resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods_cross import (  # noqa: E402
    SETTINGS,
    _p,
    banner,
    convergence_lines,
    health_lines,
    missing_folder,
    record_settings,
    reference_trends,
    run_all,
    subset_folder,
    write_tables,
)

from sikd_core.pipeline import ExperimentRun  # noqa: E402
from sikd_core.report import paired_comparisons  # noqa: E402
from sikd_core.spec import parse_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SIKD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
TRAIN, CROSS = "polyp/kvasir-seg", "polyp/cvc-clinicdb"

#: network -> its arguments at the benchmark's width range (16-128); the paper's U-Net (the anchor) last, so that
#: a methods_cross run beside this one has trained its identical stages by then (they are reused, not retrained).
NETWORKS: dict[str, dict[str, Any]] = {
    "transunet": {"widths": [16, 32, 64, 128], "hidden_size": 128, "num_layers": 4, "num_heads": 4, "mlp_dim": 512},
    "attention_unet": {"channels": [16, 32, 64, 128]},
    "basic_unet": {"features": [16, 16, 32, 64, 128, 16]},
    "segresnet": {"init_filters": 16, "blocks_down": [1, 2, 2, 2], "blocks_up": [1, 1, 1]},
    "unet": {"widths": [16, 32, 64, 128]},
}
SMOKE_NETWORKS: dict[str, dict[str, Any]] = {
    "unet": {"widths": [4, 8, 16]},
    "attention_unet": {"channels": [4, 8, 16]},
}
#: The published run's budget (epochs of steps_per_epoch steps), kept when methods_cross's budget grew.
EPOCHS = 20
SMOKE: dict[str, Any] = {"image_size": 32, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "lr": 5e-3,
                         "alpha": 2.0, "recipe": "standard", "augment": True, "seeds": [0], "train_limit": 30,
                         "cross_limit": 6, "widths": [4, 8, 16]}


def settings(smoke: bool, epochs: int | None = None) -> dict[str, Any]:
    """The run's settings: methods_cross's at this benchmark's budget (``EPOCHS``, or ``epochs``)."""
    # the teachers train for ``epochs`` here, as in the published run (methods_cross gives its own more)
    common = {k: v for k, v in SETTINGS.items() if k != "teacher_epochs"}
    s = dict(SMOKE) if smoke else {**common, "epochs": EPOCHS, "seeds": [0, 1], "cross_limit": None}
    if epochs is not None:
        s["epochs"] = epochs
    return s


def build(data: Path, out: Path, s: dict[str, Any], networks: dict[str, dict[str, Any]], device: str,
          reuse: list[Path]) -> dict[str, ExperimentRun]:
    """One experiment per network (baseline + sikd) and one for the reference recipe."""
    train = subset_folder(data / TRAIN, out / "data" / "train", s["train_limit"])
    cross = subset_folder(data / CROSS, out / "data" / "cross", s["cross_limit"])
    common = dict(train_dataset=str(train), eval_datasets=[str(cross)], image_size=s["image_size"],
                  epochs=s["epochs"], steps_per_epoch=s["steps_per_epoch"], batch_size=s["batch_size"], lr=s["lr"],
                  augment=s["augment"], recipe=s["recipe"], seeds=s["seeds"], device=device, feature_maps=0,
                  save_predictions=False)
    roots = [out, *reuse]
    exps = {}
    for net, kwargs in networks.items():
        spec = parse_spec(dict(common, name=f"networks {net}", network=net, network_kwargs=kwargs,
                               methods=["baseline", "sikd"], alpha=s["alpha"]))
        exps[net] = ExperimentRun(spec, out / net, reuse_roots=roots)
    # The reference's widths follow the anchor U-Net's (methods/reference.py), as in bench/methods_cross.py.
    spec = parse_spec(dict(common, name="networks reference", network="unet", network_kwargs={"widths": s["widths"]},
                           methods=["reference"]))
    exps["reference"] = ExperimentRun(spec, out / "reference", reuse_roots=roots)
    return exps


def _cases(exp: ExperimentRun, method: str, label: str) -> list[dict[str, Any]]:
    cases = json.loads((exp.workdir / "eval" / "cases.json").read_text())
    return [dict(c, method=label) for c in cases if c["method"] == method]


def _fmt(d: dict[str, Any]) -> str:
    return f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def tables(exps: dict[str, ExperimentRun]) -> str:
    """Per network: Dice intra/cross of baseline and SIKD (mean ± std over seeds), SIKD − baseline (paired, CI,
    Holm p within the network's experiment), the baseline − reference (paired across experiments on the same
    cases), and the health of every model."""
    reports = {n: json.loads((e.workdir / "report.json").read_text()) for n, e in exps.items()}
    ref_rep = reports["reference"]
    ref_cases = _cases(exps["reference"], "reference", "reference")
    datasets = [(ref_rep["train_dataset"], "intra")] + [(d, "cross") for d in ref_rep["eval_datasets"]]
    head = ["Network", "Model"] + [f"{d} ({sp}) Dice" for d, sp in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(rep: dict[str, Any], method: str, dataset: str) -> str:
        s = next((s for s in rep["summary"] if s["method"] == method and s["dataset"] == dataset), None)
        return "–" if s is None else f"{s['dice_mean']:.3f} ± {s['dice_std']:.3f}"

    for net, rep in reports.items():
        methods = ["reference"] if net == "reference" else ["baseline", "sikd"]
        for m in methods:
            label = "reference recipe (DynUNet, nnU-Net-like)" if net == "reference" else net
            lines.append(f"| {label} | {m} | " + " | ".join(cell(rep, m, d) for d, _ in datasets) + " |")
    lines += ["", "SIKD − baseline per network (paired per case, averaged over seeds; 95% bootstrap CI; Wilcoxon p, "
              "Holm-adjusted within each network's experiment), and the baseline's strength: baseline − reference "
              "recipe on the same cases (paired; a comparison is evidence only where the baseline is not clearly "
              "below the reference, i.e. not more than 0.02 Dice with the CI below 0):", "",
              "| Network | Dataset (split) | Cases | SIKD − baseline ΔDice [95% CI] | p (Holm) | better/worse | "
              "baseline − reference [95% CI] | baseline verdict |", "|---|---|---|---|---|---|---|---|"]
    for net, rep in reports.items():
        if net == "reference":
            continue
        strength = {(c["dataset"], c["split"]): c for c in
                    paired_comparisons(_cases(exps[net], "baseline", "baseline") + ref_cases, a="baseline",
                                       b="reference")}
        for c in rep["comparisons"]:
            if c["method"] != "sikd" or c["reference"] != "baseline":
                continue
            d = c["dice"]
            st = strength.get((c["dataset"], c["split"]))
            below = st is not None and st["dice"]["mean_diff"] < -0.02 and st["dice"]["ci_high"] < 0
            lines.append(f"| {net} | {c['dataset']} ({c['split']}) | {c['n_cases']} | {_fmt(d)} | {_p(d['p_holm'])} | "
                         f"{d['better']}/{d['worse']} | {_fmt(st['dice']) if st else '–'} | "
                         f"{'**below the reference**' if below else 'not clearly below'} |")
    lines += ["", "Training health of every model (`sikd_core/health.py`):", ""]
    for net, rep in reports.items():
        lines.extend(health_lines(net, "networks", rep.get("health") or {}))
    lines += ["", "Did the reference recipe converge within the budget (mean validation Dice of its last quarter of "
              "epochs vs the quarter before; still rising by more than 0.01 = not converged)?", ""]
    lines.extend(convergence_lines("polyp", reference_trends(exps["reference"])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding polyp/")
    p.add_argument("--out", default=str(ROOT / "runs" / "networks_cross"))
    p.add_argument("--reuse", nargs="*", default=[], help="folders of experiment folders whose finished stages "
                   "with the same key are linked instead of trained (e.g. a methods_cross run's polyp/)")
    p.add_argument("--smoke", action="store_true", help="tiny settings: proves the script, measures nothing")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, help=f"epochs of steps_per_epoch steps for every stage, instead of "
                   f"the published run's {EPOCHS}: the budget")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.epochs is not None and args.epochs < 1:
        print("error: --epochs must be at least 1", file=sys.stderr)
        return 2
    data, out = Path(args.data), Path(args.out)
    s = settings(args.smoke, args.epochs)
    networks = SMOKE_NETWORKS if args.smoke else NETWORKS
    error = missing_folder(data, [TRAIN, CROSS]) or record_settings(out, {"settings": s, "networks": networks})
    if error:
        print(error, file=sys.stderr)
        return 2
    exps = build(data, out, s, networks, args.device, [Path(r) for r in args.reuse])
    print(banner("networks", args.smoke, exps, s, f"networks: {json.dumps(networks)}"), flush=True)
    t0 = time.monotonic()
    run_all(exps, s["seeds"])
    write_tables(out, tables(exps), t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

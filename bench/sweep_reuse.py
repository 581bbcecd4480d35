"""Benchmark: an alpha sweep with and without stage reuse, side by side in one run (issue 24, item 4).

The sweep ``alpha: [0.5, 1, 2, 5]`` (:func:`sikd_core.sweep.expand_sweep`, the same expansion ``POST /sweeps``
uses) on a small polyp configuration: a Kvasir-SEG subset for training (its test split is the intra score), a
CVC-ClinicDB subset as the unseen dataset, a small U-Net, few epochs, one seed. Each of the four experiments
trains a baseline, a teacher and a student and is evaluated. Reuse on: each experiment's output folder is a
sibling of the earlier ones and stages with the same key are linked (:mod:`sikd_core.reuse`; the service does the
same by key in its database). Reuse off: the same specs with ``reuse: false``. The data is preprocessed into a
shared cache first (untimed), so neither mode pays it. It prints the stages trained and the wall and CPU time of
each mode (CPU time of this single-threaded process: a fair figure on a shared machine)
(the training stages alone, and with the four evaluations, which reuse does not shorten), and checks that the models reuse gave are the ones training again
gives (training is deterministic per seed on the CPU).

    OMP_NUM_THREADS=1 python bench/sweep_reuse.py --out runs/sweep_reuse
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec
from sikd_core.sweep import expand_sweep

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "polyp"


def subset(src: Path, dest: Path, n: int) -> Path:
    """The first ``n`` image/mask pairs of ``src`` (by name) copied to ``dest``."""
    names = sorted(p.name for p in (src / "images").iterdir())[:n]
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy2(src / sub / name, dest / sub / name)
    return dest


def warm_cache(spec_body: dict, out: Path, cache: Path) -> None:
    """Preprocess the training and cross data into the shared cache and run the network forward and backward once
    (untimed): neither mode pays the process's one-off costs (the first stage otherwise took 20 s of them)."""
    exp = ExperimentRun(parse_spec(spec_body), out, cache_dir=cache)
    images, _ = exp.split_tensors("train")
    exp.split_tensors("val")
    exp.build_model("baseline", 0)(images[:8].float()).sum().backward()
    for _, manifest, _ in exp._eval_sets():
        exp._data_for(manifest)


def run_mode(specs: list[tuple[dict, dict]], out: Path, cache: Path, *, reuse: bool) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    trained, reused, results, stage_s, stage_cpu = 0, 0, {}, 0.0, 0.0
    for values, body in specs:
        spec = parse_spec({**body, "reuse": reuse})
        folder = out / f"alpha_{values['alpha']}"
        exp = ExperimentRun(spec, folder, cache_dir=cache, reuse_roots=[out] if reuse else ())
        t_stage, c_stage = time.perf_counter(), time.process_time()
        for stage, seed in spec.stages():
            rec = exp.run_stage(stage, seed)
            reused += "reused_from" in rec
            trained += "reused_from" not in rec
        stage_s += time.perf_counter() - t_stage
        stage_cpu += time.process_time() - c_stage
        report = exp.evaluate()
        results[values["alpha"]] = {(r["method"], r["split"]): r["dice_mean"] for r in report["summary"]}
    return {"seconds": time.perf_counter() - t0, "stage_seconds": stage_s, "cpu_seconds": time.process_time() - c0,
            "stage_cpu_seconds": stage_cpu, "trained": trained, "reused": reused, "results": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding kvasir-seg/ and cvc-clinicdb/")
    p.add_argument("--out", default=str(ROOT / "runs" / "sweep_reuse"))
    p.add_argument("--train-pairs", type=int, default=96)
    p.add_argument("--cross-pairs", type=int, default=40)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1, 2, 5])
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    data = Path(args.data)
    train = subset(data / "kvasir-seg", out / "data" / "kvasir", args.train_pairs)
    cross = subset(data / "cvc-clinicdb", out / "data" / "cvc", args.cross_pairs)
    base = {"name": "alpha", "train_dataset": str(train), "eval_datasets": [str(cross)], "network": "unet",
            "network_kwargs": {"widths": args.widths}, "image_size": args.size, "epochs": args.epochs, "batch_size": 8,
            "lr": 5e-3, "seeds": [0], "methods": ["baseline", "sikd"], "mask_mode": "binary", "device": "cpu",
            "feature_maps": 0, "save_predictions": False,
            "sweep": {"alpha": [a if a != int(a) else int(a) for a in args.alphas]}}
    specs = expand_sweep(base)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}; Kvasir-SEG {args.train_pairs} pairs -> CVC-ClinicDB {args.cross_pairs}, "
          f"{args.size} px, U-Net {args.widths}, {args.epochs} epochs, seed 0, alpha {args.alphas}", flush=True)
    warm_cache(specs[0][1], out / "warm", out / "cache")
    on = run_mode(specs, out / "reuse_on", out / "cache", reuse=True)
    off = run_mode(specs, out / "reuse_off", out / "cache", reuse=False)
    print(f"\n| sweep of {len(specs)} | stages trained | stages reused | training stages, wall (CPU) | "
          "with the evaluations, wall (CPU) |\n|---|---|---|---|---|")
    for name, m in (("reuse off (before)", off), ("reuse on (after)", on)):
        print(f"| {name} | {m['trained']} | {m['reused']} | {m['stage_seconds']:.0f} s ({m['stage_cpu_seconds']:.0f} s) "
              f"| {m['seconds']:.0f} s ({m['cpu_seconds']:.0f} s) |")
    print(f"\nafter / before: training stages {on['stage_seconds'] / off['stage_seconds']:.2f} wall, "
          f"{on['stage_cpu_seconds'] / off['stage_cpu_seconds']:.2f} CPU; with the evaluations "
          f"{on['seconds'] / off['seconds']:.2f} wall, {on['cpu_seconds'] / off['cpu_seconds']:.2f} CPU (CPU time: this "
          "process's, single-threaded, so it does not grow when other work shares the machine)")
    same = all(on["results"][a][k] == off["results"][a][k] for a in on["results"] for k in on["results"][a])
    print(f"every score with reuse equals the score trained again: {same}")
    (out / "result.json").write_text(json.dumps({"on": {k: v for k, v in on.items() if k != "results"},
                                                 "off": {k: v for k, v in off.items() if k != "results"},
                                                 "identical_scores": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

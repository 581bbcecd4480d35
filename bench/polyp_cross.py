"""Evidence benchmark: the paper's core claim on real polyp data (Kvasir-SEG -> CVC-ClinicDB).

Trains the baseline and SIKD (teacher on class-mean images without skips, student with
alpha * feature MSE), and the reference recipe that measures the baseline's strength, on Kvasir-SEG, evaluates on its test split (intra) and on CVC-ClinicDB, which is
never seen in training (cross), for several seeds, and prints the paper-style table (mean +- std over
seeds) with the paired per-image comparison (bootstrap CI, Wilcoxon). The settings are fixed in
advance for 2 CPU cores (~1 hour) and were not tuned to favour either method.

    python bench/polyp_cross.py --out runs/polyp_cross            # the documented configuration
    python bench/polyp_cross.py --device cuda --size 256 --widths 64 128 256 512 1024 --epochs 100

Data: ../shared/datasets/polyp (research/educational use only; see its README). Re-running with the
same --out resumes finished stages. As ``sikd run`` does, a stage identical (by stage key) to a finished one in
a sibling folder of --out is linked, not retrained: seeds trained side by side in sibling folders combine into
one report with every seed (per-case CIs over all of them) at no training cost:

    python bench/polyp_cross.py --seeds 0 --out runs/pc/seed0 &  python bench/polyp_cross.py --seeds 1 --out runs/pc/seed1
    python bench/polyp_cross.py --seeds 0 1 --out runs/pc/all
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from sikd_core.pipeline import ExperimentRun
from sikd_core.reuse import origin_label
from sikd_core.spec import ExperimentSpec, parse_spec
from sikd_core.training import Callback

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "polyp"


class EpochPrinter(Callback):
    """One line per epoch (the log stays readable in CI and in files)."""

    def __init__(self, name: str):
        self.name = name

    def on_epoch_end(self, trainer, logs):
        extra = f" kd {logs['kd_loss']:.4f}" if "kd_loss" in logs else ""
        vd = logs.get("val_dice")
        print(f"  {self.name} epoch {logs['epoch']:3d}/{trainer.config.epochs} loss {logs['loss']:.4f}{extra} "
              f"val_dice {vd if vd is None else f'{vd:.4f}'} ({logs['train_seconds']:.1f}s)", flush=True)

    def on_warning(self, trainer, message):
        print(f"  warning ({self.name}): {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding kvasir-seg/ and cvc-clinicdb/")
    p.add_argument("--reverse", action="store_true", help="train on CVC-ClinicDB, test cross on Kvasir-SEG")
    p.add_argument("--out", default=str(ROOT / "runs" / "polyp_cross"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--recipe", choices=["standard", "paper"], default="standard",
                   help="standard (Dice+CE: measured to make the baseline as strong as the reference) or paper (CE)")
    p.add_argument("--device", default="auto")
    return p


def build_spec(args: argparse.Namespace, train: Path, cross: Path) -> ExperimentSpec:
    """The benchmark's experiment (examples/polyp_kvasir_to_cvc.yaml holds the same one for `sikd run`)."""
    return parse_spec({
        "name": f"polyp {train.name} -> {cross.name}", "train_dataset": str(train), "eval_datasets": [str(cross)],
        "network": "unet", "network_kwargs": {"widths": args.widths}, "image_size": args.size, "epochs": args.epochs,
        "batch_size": args.batch, "lr": args.lr, "seeds": args.seeds, "methods": ["baseline", "sikd", "reference"],
        "alpha": args.alpha, "teacher_input": "class_mean", "recipe": args.recipe, "device": args.device,
    })


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    data = Path(args.data)
    train, cross = data / "kvasir-seg", data / "cvc-clinicdb"
    if args.reverse:
        train, cross = cross, train
    for d in (train, cross):
        if not (d / "images").is_dir():
            print(f"error: dataset folder {d} not found (see shared/datasets/README.md)", file=sys.stderr)
            return 2
    spec = build_spec(args, train, cross)
    exp = ExperimentRun(spec, args.out, reuse_roots=[Path(args.out).resolve().parent])
    dev = exp.device
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or 'cpu'}"
    print(f"SIKD Studio polyp benchmark: {spec.name}; device {dev} ({dev_name}), {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    print(f"spec: {spec.to_json_dict()}", flush=True)
    t0 = time.monotonic()
    stage_times = {}
    for stage, seed in spec.stages():
        print(f"[{stage} seed {seed}]", flush=True)
        ts = time.monotonic()
        record = exp.run_stage(stage, seed, [EpochPrinter(f"{stage}/{seed}")])
        stage_times[(stage, seed)] = time.monotonic() - ts
        if record.get("reused_from"):
            print(f"  reused from {origin_label(record['reused_from'])}", flush=True)
    print("[evaluation]", flush=True)
    exp.evaluate()
    wall = time.monotonic() - t0
    print("\n" + (exp.workdir / "report.md").read_text())
    print(f"wall time {wall / 60:.1f} min this run (finished stages are not retrained); "
          f"report: {exp.workdir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

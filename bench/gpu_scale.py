"""End-to-end cost at the paper's scale: where an experiment's wall time goes, and how busy the GPU is.

Trains the paper-size U-Net (widths 64..1024, 256x256, bf16 autocast + channels_last) baseline and SIKD on
two real cross-dataset pairs, Kvasir-SEG -> CVC-ClinicDB and BUSI -> BUS-BRA, through the same
``sikd_core.pipeline.ExperimentRun`` the CLI and the workers run, and measures:

* the experiment's wall time against the sum of pure training-step times (``Trainer.train_step``, CUDA
  synchronised), and the rest split into batch assembly (index + host-to-device copy), augmentation,
  validation, checkpoint writes, stage set-up (data preparation, model build, bundle save) and evaluation;
* GPU utilisation, sampled every 0.5 s from ``nvidia-smi`` (``torch.cuda.utilization()`` as a fallback);
* experiments per GPU-hour with one experiment at a time, and with ``--concurrency`` experiments at once in
  separate processes on the same GPU (what a worker with several stages per GPU would do).

Writes ``summary.json`` and ``summary.md`` to ``--out``. Phases are skipped (and say so) when the remaining
``--budget-s`` cannot hold them, so the script fits its slot (8 minutes on one H200-class GPU by default).

    python bench/gpu_scale.py --out gpu-scale                 # GPU: the documented configuration
    python bench/gpu_scale.py --out /tmp/smoke --smoke        # CPU: tiny sizes, 1 epoch, SYNTHETIC phantoms

Data: ``--data`` (default ``../shared/datasets`` or ``$SIKD_SHARED_DATASETS``) holding ``polyp/`` and
``breast-us/`` (see its README for terms of use). ``--smoke`` uses generated SYNTHETIC phantoms instead, so
the script's code paths are tested on any machine (tests/unit/test_bench_gpu_scale.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sikd_core.pipeline import ExperimentRun  # noqa: E402
from sikd_core.spec import parse_spec  # noqa: E402
from sikd_core.training import Callback  # noqa: E402

PAIRS = {"polyp": ("polyp/kvasir-seg", "polyp/cvc-clinicdb"), "breast": ("breast-us/busi", "breast-us/bus-bra")}
PAPER_WIDTHS = [64, 128, 256, 512, 1024]


# ------------------------------------------------------------------------------------------ measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer(Callback):
    """Times the parts of the training loop by wrapping the trainer's own methods (synchronised on CUDA):
    ``train_step`` (the pure step), ``_batch`` (index + copy to the device), the augmenter, ``validate`` and
    ``_save``/``_save_mid_epoch`` (checkpoints). Benchmark instrumentation only: the library itself is not changed."""

    def __init__(self, into: dict[str, float]):
        self.t = into
        self._in_validation = False

    def on_train_start(self, trainer: Any) -> None:
        dev = trainer.device

        def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*a: Any, **k: Any) -> Any:
                sync(dev)
                t0 = time.perf_counter()
                out = fn(*a, **k)
                sync(dev)
                key = "validation_data" if name == "data" and self._in_validation else name
                self.t[key] += time.perf_counter() - t0
                return out
            return timed

        validate = trainer.validate

        def validate_flagged() -> Any:
            self._in_validation = True
            try:
                return validate()
            finally:
                self._in_validation = False

        trainer.train_step = wrap("train_step", trainer.train_step)
        trainer._batch = wrap("data", trainer._batch)  # noqa: SLF001 - instrumentation
        trainer.validate = wrap("validation", validate_flagged)
        trainer._save = wrap("checkpoint", trainer._save)  # noqa: SLF001
        if hasattr(trainer, "_save_mid_epoch"):  # checkpoints written inside an epoch count as checkpoints too
            trainer._save_mid_epoch = wrap("checkpoint", trainer._save_mid_epoch)  # noqa: SLF001
        if trainer.augmenter is not None:
            trainer.augmenter = wrap("augment", trainer.augmenter)
        self._t0 = time.perf_counter()

    def on_step_end(self, trainer: Any, logs: dict[str, float]) -> None:
        self.t["steps"] += 1

    def on_train_end(self, trainer: Any, result: Any) -> None:
        self.t["fit"] += time.perf_counter() - self._t0


class GpuSampler:
    """Samples GPU utilisation (%) and memory (MiB) every ``interval`` s in a thread."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []
        self.source = "none"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[float, float] | None:
        if shutil.which("nvidia-smi"):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True,
                                     timeout=5).stdout.strip().splitlines()[0]
                util, mem = (float(x) for x in out.split(","))
                self.source = "nvidia-smi"
                return util, mem
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
        if torch.cuda.is_available():
            try:
                self.source = "torch.cuda.utilization"
                return float(torch.cuda.utilization()), float(torch.cuda.memory_reserved() / 2**20)
            except Exception:  # noqa: BLE001 - pynvml missing: no utilisation figures
                return None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._read()
            if got is not None:
                self.samples.append((time.monotonic(), *got))
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def mean(self, t0: float, t1: float) -> dict[str, float | None]:
        win = [s for s in self.samples if t0 <= s[0] <= t1]
        if not win:
            return {"util_mean": None, "util_busy_fraction": None, "mem_max_mib": None, "samples": 0}
        return {"util_mean": sum(s[1] for s in win) / len(win),
                "util_busy_fraction": sum(1 for s in win if s[1] > 0) / len(win),
                "mem_max_mib": max(s[2] for s in win), "samples": len(win)}


# ------------------------------------------------------------------------------------------ one experiment
def spec_for(name: str, train: Path, cross: Path, args: argparse.Namespace) -> dict[str, Any]:
    return dict(name=name, train_dataset=str(train), eval_datasets=[str(cross)], network="unet",
                network_kwargs={"widths": args.widths}, image_size=args.size, epochs=args.epochs,
                batch_size=args.batch, lr=args.lr, seeds=args.seeds, methods=["baseline", "sikd"], device=args.device,
                amp=True, feature_maps=0, save_predictions=False, steps_per_epoch=args.steps_per_epoch)


def run_experiment(spec: dict[str, Any], workdir: str, cache: str, out_json: str) -> dict[str, Any]:
    """Train every stage (timed) then evaluate (timed); writes and returns the timing record."""
    t_start = time.perf_counter()
    exp = ExperimentRun(parse_spec(spec), workdir, cache_dir=cache, checkpoint_interval_s=30.0)
    parts: dict[str, float] = defaultdict(float)
    parts["experiment_setup"] = time.perf_counter() - t_start  # spec check, first imports of the process
    stages = []
    for stage, seed in exp.spec.stages():
        t = time.perf_counter()
        st: dict[str, float] = defaultdict(float)
        rec = exp.run_stage(stage, seed, [StageTimer(st)])
        wall = time.perf_counter() - t
        stages.append({"stage": stage, "seed": seed, "wall_s": wall, "best_val_dice": rec.get("best_val_dice"),
                       "health": [f["code"] for f in rec.get("health") or []], **st})
        for k, v in st.items():
            parts[k] += v
        parts["stage_wall"] += wall
    t = time.perf_counter()
    report = exp.evaluate()
    parts["evaluation"] = time.perf_counter() - t
    wall = time.perf_counter() - t_start
    out = {"name": spec["name"], "wall_s": wall, "parts": dict(parts), "stages": stages,
           "dice": {f"{s['method']} {s['dataset']} ({s['split']})": s["dice_mean"] for s in report["summary"]},
           "health": report.get("health", {}).get("status"),
           "findings": [f["code"] + ": " + f["message"] for f in report.get("health", {}).get("findings", [])]}
    Path(out_json).write_text(json.dumps(out, indent=1))
    return out


def _child(spec: dict[str, Any], workdir: str, cache: str, out_json: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    run_experiment(spec, workdir, cache, out_json)


def breakdown(rec: dict[str, Any]) -> dict[str, float]:
    """Shares of the experiment's wall time (seconds and fraction)."""
    p, wall = rec["parts"], rec["wall_s"]
    setup = p.get("stage_wall", 0) - p.get("fit", 0)
    loop_other = p.get("fit", 0) - sum(p.get(k, 0) for k in ("train_step", "data", "augment", "validation",
                                                                "checkpoint"))
    items = {"train_step": p.get("train_step", 0), "data (batch + copy)": p.get("data", 0),
             "augment": p.get("augment", 0), "validation": p.get("validation", 0),
             "checkpoint": p.get("checkpoint", 0), "loop other (callbacks, logging)": loop_other,
             "stage set-up (data prep, model, bundle)": setup, "evaluation": p.get("evaluation", 0),
             "experiment set-up (spec, first imports)": p.get("experiment_setup", 0)}
    return items | {"total": wall, "pure_step_fraction": p.get("train_step", 0) / wall,
                                                "data_fraction": (p.get("data", 0) + p.get("augment", 0)) / wall}


# ------------------------------------------------------------------------------------------ main
def smoke_data(root: Path) -> dict[str, tuple[Path, Path]]:
    """SYNTHETIC phantom pairs standing in for the two real pairs (smoke mode only)."""
    from sikd_core.data import generate_phantoms

    sets = {d: generate_phantoms(root / d, domain=d, n=n, seed=i, size=48)
            for i, (d, n) in enumerate((("vendor_a", 16), ("vendor_b", 4), ("vendor_c", 16)), 1)}
    return {"phantom_a": (sets["vendor_a"], sets["vendor_b"]), "phantom_c": (sets["vendor_c"], sets["vendor_b"])}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for summary.json, summary.md and the runs")
    p.add_argument("--data", default=os.environ.get("SIKD_SHARED_DATASETS", str(ROOT.parent / "shared" / "datasets")))
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--widths", type=int, nargs="+", default=PAPER_WIDTHS)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=2, help="experiments at once in the second phase (1: skip it)")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip a phase that would not fit in what is left")
    p.add_argument("--smoke", action="store_true", help="CPU-sized check of every code path (SYNTHETIC phantoms)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_begin = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.size, args.widths, args.epochs, args.batch, args.steps_per_epoch = 32, [4, 8], 1, 4, 2
        args.seeds = args.seeds[:1]
        pairs = smoke_data(out / "data")
    else:
        root = Path(args.data)
        pairs = {k: (root / PAIRS[k][0], root / PAIRS[k][1]) for k in args.pairs}
        missing = [str(p) for pair in pairs.values() for p in pair if not p.is_dir()]
        if missing:
            print(f"error: datasets not found: {', '.join(missing)} (give --data)", file=sys.stderr)
            return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.device = str(device)
    cache = str(out / "cache")
    specs = {name: spec_for(name, tr, cr, args) for name, (tr, cr) in pairs.items()}
    summary: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]) if argv is None else "gpu_scale.py " + " ".join(argv),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                    or "cpu", "cpu_threads": torch.get_num_threads()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}, "phases": {}, "skipped": []}

    def left() -> float:
        return args.budget_s - (time.monotonic() - t_begin)

    with GpuSampler() as gpu:
        # phase 1: one experiment at a time (the first run also prepares and caches the data)
        seq: dict[str, Any] = {}
        t0 = time.monotonic()
        for name, spec in specs.items():
            if seq and left() < 1.2 * max(r["wall_s"] for r in seq.values()):
                summary["skipped"].append(f"sequential {name}: {left():.0f} s of budget left")
                continue
            ts = time.monotonic()
            seq[name] = run_experiment(spec, str(out / "seq" / name), cache, str(out / f"seq_{name}.json"))
            seq[name]["gpu"] = gpu.mean(ts, time.monotonic())
            seq[name]["breakdown"] = breakdown(seq[name])
            print(f"{name}: {seq[name]['wall_s']:.1f} s, pure steps {seq[name]['breakdown']['pure_step_fraction']:.0%}"
                  f", GPU util {seq[name]['gpu']['util_mean']}", flush=True)
        t1 = time.monotonic()
        summary["phases"]["sequential"] = {"experiments": seq, "wall_s": t1 - t0, "gpu": gpu.mean(t0, t1),
                                           "experiments_per_gpu_hour": len(seq) * 3600 / (t1 - t0) if seq else None}
        # phase 2: the same experiments at once, one process each, on the same device
        done = [n for n in specs if n in seq]
        n = min(args.concurrency, len(done))
        if n >= 2 and left() < 1.3 * summary["phases"]["sequential"]["wall_s"]:
            summary["skipped"].append(f"concurrent x{n}: {left():.0f} s of budget left, the sequential phase took "
                                      f"{summary['phases']['sequential']['wall_s']:.0f} s")
        elif n >= 2:
            ctx = mp.get_context("spawn")
            procs = []
            t0 = time.monotonic()
            for name in done[:n]:
                p = ctx.Process(target=_child, args=(specs[name], str(out / "conc" / name), cache,
                                                     str(out / f"conc_{name}.json")))
                p.start()
                procs.append((name, p))
            for _, p in procs:
                p.join()
            t1 = time.monotonic()
            conc = {name: json.loads((out / f"conc_{name}.json").read_text()) for name, p in procs
                    if p.exitcode == 0 and (out / f"conc_{name}.json").is_file()}
            for rec in conc.values():
                rec["breakdown"] = breakdown(rec)
            summary["phases"]["concurrent"] = {
                "processes": n, "experiments": conc, "wall_s": t1 - t0, "gpu": gpu.mean(t0, t1),
                "failed": [name for name, p in procs if p.exitcode != 0],
                "experiments_per_gpu_hour": len(conc) * 3600 / (t1 - t0) if conc else None}
        summary["gpu_source"] = gpu.source
    summary["total_s"] = time.monotonic() - t_begin
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "summary.md").write_text(render(summary))
    print(render(summary))
    return 0


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def render(s: dict[str, Any]) -> str:
    lines = [f"# gpu_scale: {s['machine']['device']}", "", f"`{s['command']}`", "",
             f"torch {s['machine']['torch']} · GPU utilisation from {s.get('gpu_source')} · total {s['total_s']:.0f} s",
             ""]
    seq = s["phases"].get("sequential", {})
    for name, rec in seq.get("experiments", {}).items():
        b = rec["breakdown"]
        util = rec["gpu"]["util_mean"]
        lines += [f"## {name} (one experiment at a time): {rec['wall_s']:.1f} s, GPU util "
                  f"{'–' if util is None else format(util, '.0f') + '%'}, health {rec['health']}", "", "| part | seconds | share of wall |", "|---|---|---|"]
        for k, v in b.items():
            if k in ("total", "pure_step_fraction", "data_fraction"):
                continue
            lines.append(f"| {k} | {v:.2f} | {_pct(v / b['total'] if b['total'] else None)} |")
        lines += [f"| **wall** | {b['total']:.2f} | 100% |", "",
                  f"Pure training steps: {_pct(b['pure_step_fraction'])} of the wall time; data pipeline (batch + "
                  f"copy + augmentation): {_pct(b['data_fraction'])}. Dice: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in rec["dice"].items()), ""]
        if rec["findings"]:
            lines += ["Health findings:", *[f"- {f}" for f in rec["findings"]], ""]
    lines += ["## Experiments per GPU-hour", "", "| mode | experiments | wall (s) | per GPU-hour | mean GPU util |",
              "|---|---|---|---|---|"]
    for mode, ph in s["phases"].items():
        util = ph["gpu"]["util_mean"]
        eph = ph.get("experiments_per_gpu_hour")
        lines.append(f"| {mode}{' x' + str(ph['processes']) if 'processes' in ph else ''} | {len(ph['experiments'])} "
                     f"| {ph['wall_s']:.1f} | {'–' if eph is None else f'{eph:.1f}'} | "
                     f"{'–' if util is None else f'{util:.0f}%'} |")
    if s["skipped"]:
        lines += ["", "Skipped: " + "; ".join(s["skipped"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

"""Evidence benchmark: the paper's comparison methods, with and without SIKD, across datasets.

Two tasks, each trained on one dataset and scored on its test split (intra) and on a dataset from
another country and other scanners that is never seen in training (cross):

- breast ultrasound: BUSI (Cairo) -> BUS-BRA (Rio de Janeiro), the paper's fifth task;
- colonoscopy polyps: Kvasir-SEG (Norway) -> CVC-ClinicDB (Barcelona).

Seven methods (baseline, sikd, sdm, gin, gin+sikd, maxstyle, maxstyle+sikd) plus the ``reference`` recipe,
x 3 seeds; one class-mean teacher per seed and task is shared by sikd and every X+sikd student (the teacher
does not depend on X). The settings below (``SETTINGS``) are the standard recipe (Dice+CE, Adam 5e-3: the dashboard preset's
setting, which ``bench/recipe_defaults.py`` measured on the validation splits to put this U-Net's baseline within
0.02 Dice of the reference on Kvasir-SEG and BUSI), fixed before the run and never tuned on the cross-dataset
scores. The budget, 50 epochs x 20 steps (1 000 steps; teachers 60 epochs), is the least at which
``bench/reference_budget.py`` found the baseline level with the reference on both training datasets (two seeds,
on the test splits of Kvasir-SEG and BUSI: at 400 steps it trailed it by 0.041 on Kvasir-SEG); both published
tasks were trained at it (polyps 2026-12-03/04, breast ultrasound 2026-12-04).
BUS-BRA is scored on a fixed seeded subset of ``cross_limit`` images (evaluation time); every other set is
used in full.

A comparison is evidence only when the baseline is as strong as the field's standard recipe makes it, so
every seed also trains the product's ``reference`` method (an independent nnU-Net-like recipe: DynUNet,
nnU-Net's Dice+CE, its own optimiser and augmentation, same splits and budget), and the tables print the
baseline's strength (baseline minus reference, paired, with its CI) from each report.

    python bench/methods_cross.py --out runs/methods_cross          # the documented configuration
    python bench/methods_cross.py --out /tmp/smoke --smoke          # tiny: proves the script end to end

Seeds and tasks can train side by side (one process per core) and combine without retraining, since a stage
identical by key to a finished one under --reuse is linked:

    python bench/methods_cross.py --tasks polyp --seeds 0 --out runs/mc/s0 &  # ... --seeds 1 --out runs/mc/s1
    python bench/methods_cross.py --tasks polyp --out runs/mc/all --reuse runs/mc/s0/polyp runs/mc/s1/polyp ...

or, the same in one command (three processes, one torch thread each, then combined):

    python bench/methods_cross.py --tasks polyp --jobs 3 --out runs/mc/all

Whether the reference's lead is its (nnU-Net's) augmentation, and whether SIKD adds to a baseline augmented as
nnU-Net's, is a run of a few methods with the reference's augmentation (the spec's ``augmentation: nnunet``; the
reference is the same stage as in the full run, so --reuse links it). Run 2026-12-04 on both tasks
(``docs/benchmarks/methods_cross_nnaug``): it made our U-Net's baseline worse on all four datasets at 1 000 steps.

    python bench/methods_cross.py --tasks polyp --methods baseline sikd --augmentation nnunet --jobs 3 \
        --out runs/mc/polyp_nnaug --reuse runs/mc/polyp/polyp

Data: ../shared/datasets (or --data / SIKD_SHARED_DATASETS); research use only, see its README.
Re-running with the same --out resumes: finished stages are not retrained, finished reports not redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.errors import SpecError
from sikd_core.health import reference_convergence
from sikd_core.pipeline import ExperimentRun
from sikd_core.report import method_label
from sikd_core.reuse import origin_label
from sikd_core.spec import parse_spec
from sikd_core.training import Callback

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("SIKD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))

METHODS = ["baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd"]
#: Trained with them on every seed: the yardstick of the baseline, not a compared method.
REFERENCE = "reference"
#: task -> (training dataset, cross dataset), folders relative to the data root.
TASKS = {
    "breast-us": ("breast-us/busi", "breast-us/bus-bra"),
    "polyp": ("polyp/kvasir-seg", "polyp/cvc-clinicdb"),
}
#: Fixed before the first run (see the module docstring); --smoke replaces them with SMOKE.
SETTINGS: dict[str, Any] = {
    "image_size": 64, "widths": [16, 32, 64, 128], "epochs": 50, "teacher_epochs": 60, "steps_per_epoch": 20,
    "batch_size": 8, "lr": 5e-3, "alpha": 2.0, "recipe": "standard", "augment": True, "seeds": [0, 1, 2],
    "cross_limit": 600, "train_limit": None,
}
SMOKE: dict[str, Any] = {
    "image_size": 32, "widths": [4, 8, 16], "epochs": 1, "teacher_epochs": 2, "steps_per_epoch": 2, "batch_size": 4,
    "lr": 2e-3, "alpha": 2.0, "recipe": "standard", "augment": True, "seeds": [0], "cross_limit": 6,
    "train_limit": 30,
}


class EpochPrinter(Callback):
    """One line per epoch (the log stays readable in files)."""

    def __init__(self, name: str):
        self.name = name

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        extra = "".join(f" {k} {logs[k]:.4f}" for k in ("kd_loss", "sdm_loss", "style_seg_loss") if k in logs)
        vd = logs.get("val_dice")
        print(f"  {self.name} epoch {logs['epoch']:3d}/{trainer.config.epochs} loss {logs['loss']:.4f}{extra} "
              f"val_dice {vd if vd is None else f'{vd:.4f}'} ({logs['train_seconds']:.1f}s)", flush=True)


def subset_folder(src: Path, dest: Path, limit: int | None, seed: int = 0) -> Path:
    """``src`` itself, or a folder of symlinks to a seeded random subset of ``limit`` image/mask pairs
    (named as ``src``, so report rows keep the dataset's name)."""
    images = sorted(p for p in (src / "images").iterdir() if p.is_file())
    if limit is None or limit >= len(images):
        return src
    dest = dest / src.name
    chosen = sorted(np.random.default_rng(seed).choice(len(images), size=limit, replace=False).tolist())
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for i in chosen:
        img = images[i]
        masks = list((src / "masks").glob(img.stem + ".*"))
        if not masks:
            continue
        for link, target in ((dest / "images" / img.name, img), (dest / "masks" / masks[0].name, masks[0])):
            if not link.exists():
                link.symlink_to(target.resolve())
    return dest


def build_experiments(data: Path, out: Path, s: dict[str, Any], device: str,
                      tasks: list[str] | None = None, reuse: list[Path] | None = None) -> dict[str, ExperimentRun]:
    """Per task (all, or ``tasks``): the seven methods and the reference recipe, in one experiment; a stage
    identical (by stage key) to a finished one under ``reuse`` (folders of experiment folders) is linked."""
    exps = {}
    for task, (train_rel, cross_rel) in TASKS.items():
        if tasks and task not in tasks:
            continue
        train = subset_folder(data / train_rel, out / "data" / task / "train", s["train_limit"])
        cross = subset_folder(data / cross_rel, out / "data" / task / "cross", s["cross_limit"])
        common = dict(train_dataset=str(train), eval_datasets=[str(cross)], image_size=s["image_size"],
                      epochs=s["epochs"], teacher_epochs=s.get("teacher_epochs"), steps_per_epoch=s["steps_per_epoch"],
                      batch_size=s["batch_size"], lr=s["lr"], augment=s["augment"], device=device, feature_maps=0,
                      save_predictions=False, augmentation=s.get("augmentation", "standard"))
        spec = parse_spec(dict(common, name=f"methods {task}", network="unet", network_kwargs={"widths": s["widths"]},
                               seeds=s["seeds"], methods=[*s.get("methods", METHODS), REFERENCE], alpha=s["alpha"],
                               recipe=s["recipe"]))
        exps[task] = ExperimentRun(spec, out / task / "methods", reuse_roots=list(reuse or []))
    return exps


def run_all(exps: dict[str, ExperimentRun], seeds: list[int]) -> None:
    """Train seed by seed across the experiments (a partial run covers every task or network), then evaluate
    each; a stage linked from an identical finished one says so."""
    todo = [(task, exp, st, sd) for sd in seeds for task, exp in exps.items()
            for st, s2 in exp.spec.stages() if s2 == sd]
    t0 = time.monotonic()
    for k, (task, exp, stage, seed) in enumerate(todo, 1):
        if exp.is_done(stage, seed):
            continue
        tag = f"{task}/{stage}/{seed}"
        print(f"[{k}/{len(todo)}] {tag} (elapsed {(time.monotonic() - t0) / 60:.1f} min)", flush=True)
        ts = time.monotonic()
        record = exp.run_stage(stage, seed, [EpochPrinter(tag)])
        how = f"reused from {origin_label(record['reused_from'])}" if record.get("reused_from") else "trained"
        print(f"  {how} in {time.monotonic() - ts:.0f}s", flush=True)
    for task, exp in exps.items():
        if not (exp.workdir / "report.json").exists():
            print(f"[evaluation] {task} {exp.spec.name}", flush=True)
            exp.evaluate()


def seed_folder(out: Path, seed: int) -> Path:
    """Where ``--jobs`` trains ``seed`` (its own ``--out``; the log beside it)."""
    return out / "seeds" / f"seed_{seed}"


def train_seeds_apart(args: argparse.Namespace, out: Path, seeds: list[int]) -> str | None:
    """Each seed trained by its own process of this script (at most ``args.jobs`` at once) in
    :func:`seed_folder` with the same data, tasks, budget and device; an error naming the logs of the seeds
    whose process failed, or None."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--data", args.data, "--device", args.device]
    argv += (["--smoke"] if args.smoke else []) + (["--tasks", *args.tasks] if args.tasks else [])
    argv += ["--epochs", str(args.epochs)] if args.epochs is not None else []
    argv += ["--methods", *args.methods] if args.methods else []
    argv += ["--augmentation", args.augmentation] if args.augmentation else []
    argv += ["--reuse", *args.reuse] if args.reuse else []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    waiting, running, failed = list(seeds), {}, []
    print(f"training seeds {seeds} in {min(args.jobs, len(seeds))} processes at once: logs "
          f"{out / 'seeds'}/seed_<S>.log", flush=True)
    while waiting or running:
        while waiting and len(running) < args.jobs:
            seed = waiting.pop(0)
            folder = seed_folder(out, seed)
            folder.parent.mkdir(parents=True, exist_ok=True)
            with open(folder.parent / f"seed_{seed}.log", "ab") as log:
                running[seed] = subprocess.Popen([*argv, "--seeds", str(seed), "--out", str(folder)],
                                                 stdout=log, stderr=subprocess.STDOUT, env=env)
        time.sleep(0.5)
        for seed, proc in list(running.items()):
            if proc.poll() is not None:
                del running[seed]
                print(f"  seed {seed} {'finished' if proc.returncode == 0 else 'FAILED'}", flush=True)
                if proc.returncode != 0:
                    failed.append(seed)
    if failed:
        failed.sort()
        logs = ", ".join(str(seed_folder(out, seed).parent / f"seed_{seed}.log") for seed in failed)
        return f"error: the process of seed(s) {failed} failed; see {logs}"
    return None


def missing_folder(data: Path, rels: list[str]) -> str | None:
    """The error for the first dataset folder under ``data`` that is not there, or None."""
    for rel in rels:
        if not (data / rel / "images").is_dir():
            return f"error: dataset folder {data / rel} not found (see shared/datasets/README.md)"
    return None


def record_settings(out: Path, recorded: Any) -> str | None:
    """Keep the run's settings in ``out/settings.json``; the error when ``out`` was started with others."""
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != recorded:
        return f"error: {out} was started with other settings ({settings_path}); use a new --out"
    settings_path.write_text(json.dumps(recorded, indent=1))
    return None


def write_tables(out: Path, text: str, t0: float, where: str = "") -> None:
    """``out/tables.md``, the tables printed, and this run's wall time."""
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)
    print(f"\nwall time {(time.monotonic() - t0) / 60:.1f} min this run (finished stages are not retrained); "
          f"tables: {out / 'tables.md'}{where}")


def banner(kind: str, smoke: bool, exps: dict[str, ExperimentRun], s: dict[str, Any], what: str) -> str:
    """The run's first lines: the benchmark, the device and machine, the settings and ``what`` it compares."""
    dev = next(iter(exps.values())).device
    return (f"SIKD Studio {kind} benchmark{' (SMOKE: tiny settings, not evidence)' if smoke else ''}; device {dev} "
            f"({platform.processor() or platform.machine()}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}\nsettings: {json.dumps(s)}\n{what}")


def _cell(summary: dict[tuple[str, str], dict[str, Any]], method: str, dataset: str, metric: str) -> str:
    s = summary.get((method, dataset))
    if s is None:
        return "–"
    return f"{s[f'{metric}_mean']:.3f} ± {s[f'{metric}_std']:.3f}"


def reference_trends(exp: ExperimentRun) -> dict[int, dict[str, Any]]:
    """Whether each seed's reference recipe had converged (its validation Dice over the last quarter of epochs vs
    the quarter before, :func:`sikd_core.health.reference_convergence`), read from the stage records so that
    reports made before the check are covered too."""
    records = {(st, sd): exp.stage_record(st, sd) or {} for st, sd in exp.spec.stages() if st == REFERENCE}
    return reference_convergence(records)


def publish(exps: dict[str, ExperimentRun], dest: Path) -> None:
    """Per task: ``dest/<task>/`` gets report.json, report.md and convergence.json (the reference's trend per
    seed): all :func:`tables` needs, so tasks run in different sessions combine with ``--tables-from``."""
    for task, exp in exps.items():
        folder = dest / task
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "report.md"):
            (folder / name).write_bytes((exp.workdir / name).read_bytes())
        (folder / "convergence.json").write_text(json.dumps(reference_trends(exp), indent=1))


def load_published(src: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, dict[str, Any]]]]:
    """The reports and reference trends :func:`publish` wrote, by task (in :data:`TASKS` order)."""
    reports, trends = {}, {}
    for task in TASKS:
        if (src / task / "report.json").is_file():
            reports[task] = json.loads((src / task / "report.json").read_text())
            raw = json.loads((src / task / "convergence.json").read_text())
            trends[task] = {int(k): v for k, v in raw.items()}
    return reports, trends


def tables(reports: dict[str, dict[str, Any]], trends: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The paper-style table (methods as rows; intra | cross per task; Dice and IoU, mean ± std over seeds),
    the paired comparisons, the baseline-strength reference, every model's health and the reference's
    convergence, as Markdown, from each task's report (and reference trends)."""
    cols: list[tuple[str, str, str]] = []
    for task, rep in reports.items():
        cols += [(task, rep["train_dataset"], "intra")] + [(task, d, "cross") for d in rep["eval_datasets"]]
    head = ["Method"] + [f"{d} ({sp}) {m}" for _, d, sp in cols for m in ("Dice", "IoU")]
    lines = settings_lines(reports) + ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summ = {task: {(s["method"], s["dataset"]): s for s in rep["summary"]} for task, rep in reports.items()}
    shown = {m for rep in reports.values() for m in rep.get("methods") or rep["spec"]["methods"]}
    for m in [x for x in [*METHODS, REFERENCE] if x in shown]:  # a run of a few methods lists those only
        cells = [method_label(m)] + [_cell(summ[t], m, d, metric) for t, d, _ in cols for metric in ("dice", "iou")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired per-case comparisons (method − comparator, per case averaged over seeds; 95% bootstrap "
              "CI; Wilcoxon p, Holm-adjusted within each task):", "",
              "| Task | Comparison | Dataset (split) | Cases | ΔDice [95% CI] | p | p (Holm) | better/worse |",
              "|---|---|---|---|---|---|---|---|"]
    for task, rep in reports.items():
        for c in rep["comparisons"]:
            d = c["dice"]
            lines.append(f"| {task} | {method_label(c['method'])} − {method_label(c['reference'])} | {c['dataset']} "
                         f"({c['split']}) | {c['n_cases']} | {d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, "
                         f"{d['ci_high']:+.3f}] | {_p(d['p_value'])} | {_p(d['p_holm'])} | {d['better']}/{d['worse']} |")
    lines += ["", "Baseline strength: our baseline minus the reference recipe (an independent nnU-Net-like recipe, "
              "same splits and budget, every seed), paired per case and averaged over seeds; 95% bootstrap CI. A "
              "comparison is evidence only where the baseline is not clearly below the reference (more than "
              "0.02 Dice with the CI below 0):", "",
              "| Task | Dataset (split) | our baseline Dice | reference Dice | baseline − reference [95% CI] | verdict |",
              "|---|---|---|---|---|---|"]
    for task, rep in reports.items():
        for e in rep.get("baseline_strength") or []:
            d = e["dice"]
            lines.append(f"| {task} | {e['dataset']} ({e['split']}) | {_cell(summ[task], 'baseline', e['dataset'], 'dice')} "
                         f"| {_cell(summ[task], REFERENCE, e['dataset'], 'dice')} | {d['mean_diff']:+.3f} "
                         f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | "
                         f"{'**below the reference**' if e['below_reference'] else 'not clearly below'} |")
    lines += ["", "Training health of every model (the checks of `sikd_core/health.py`: collapsed prediction, zero "
              "validation Dice, non-finite or exploding loss, unlearned teacher, student identical to or far below "
              "its baseline, cross-dataset score at chance):", ""]
    for task, rep in reports.items():
        lines.extend(health_lines(task, "methods", rep.get("health") or {}))
    lines += ["", "Did the reference recipe converge within the budget (mean validation Dice of its last quarter of "
              "epochs vs the quarter before; still rising by more than 0.01 = not converged)?", ""]
    for task, tr in trends.items():
        lines.extend(convergence_lines(task, tr))
    return "\n".join(lines)


def budget_steps(spec: dict[str, Any]) -> int:
    """The training steps of every stage but the teacher, from a report's spec."""
    return int(spec["epochs"]) * int(spec["steps_per_epoch"])


def settings_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """What each task's report was trained with, read from its spec (tasks published in different sessions may
    differ); a warning first when their budgets differ, since methods then compare within a task only."""
    out = ["Settings, from each task's report:", ""]
    steps = {task: budget_steps(rep["spec"]) for task, rep in reports.items()}
    if len(set(steps.values())) > 1:
        out += ["**The tasks were trained at different budgets ("
                + ", ".join(f"{t} {_thousands(n)} steps" for t, n in steps.items())
                + "): compare methods within a task, not across tasks.**", ""]
    for task, rep in reports.items():
        sp = rep["spec"]
        size = sp["image_size"] if isinstance(sp["image_size"], list) else [sp["image_size"]] * 2
        out.append(f"- {task}: {sp['network']} {json.dumps(sp.get('network_kwargs') or {})} at {size[0]}×{size[1]}; "
                   f"{sp['epochs']} epochs × {sp['steps_per_epoch']} steps of batch {sp['batch_size']} "
                   f"({_thousands(steps[task])} steps), teachers {sp.get('teacher_epochs') or sp['epochs']} epochs; "
                   f"recipe {sp.get('recipe')} (loss {sp.get('loss')}), lr {sp['lr']:g}, α {sp['alpha']:g}, "
                   f"augmentation {sp.get('augmentation', 'standard') if sp.get('augment') else 'off'}; "
                   f"seeds {', '.join(map(str, sp['seeds']))}")
    return out


def _thousands(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def convergence_lines(label: str, trends: dict[int, dict[str, Any]]) -> list[str]:
    """One line per reference seed: converged, or still rising (then it bounds the baseline from below only)."""
    out = []
    for seed, t in sorted(trends.items()):
        out.append(f"- {label} reference, seed {seed}: validation Dice {t['before']:.3f} -> {t['last']:.3f} over its "
                   f"last {2 * t['epochs']} epochs: " + ("converged" if t["converged"] else
                                                          "**still rising (a lower bound on the baseline only)**"))
    return out


def health_lines(task: str, kind: str, health: dict[str, Any]) -> list[str]:
    """One line per experiment: how many models are healthy, then one line per finding."""
    models = health.get("models") or {}
    bad = sorted(k for k, v in models.items() if v != "healthy")
    out = [f"- {task} {kind}: {len(models) - len(bad)} of {len(models)} models healthy"
           + (f"; unhealthy: {', '.join(bad)}" if bad else "")]
    for f in health.get("findings") or []:
        out.append(f"  - {f.get('severity')} `{f.get('code')}` ({f.get('stage')}, seed {f.get('seed')}): {f.get('message')}")
    return out


def _p(v: float) -> str:
    return "–" if v != v else ("<0.001" if v < 0.001 else f"{v:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding breast-us/ and polyp/")
    p.add_argument("--out", default=str(ROOT / "runs" / "methods_cross"))
    p.add_argument("--smoke", action="store_true", help="tiny settings: proves the script, measures nothing")
    p.add_argument("--device", default="auto")
    p.add_argument("--publish", help="also write each task's report.json, report.md and convergence.json here")
    p.add_argument("--tables-from", help="no training: print the tables of the tasks published in this folder")
    p.add_argument("--reuse", nargs="*", default=[], help="folders of experiment folders (e.g. an earlier --out's "
                   "<task>/) whose finished stages with the same stage key are linked instead of trained")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), help="run only these tasks (the others' tables are "
                   "left out; a task's report can be published and combined later)")
    p.add_argument("--seeds", type=int, nargs="+", help="train only these seeds (default: the settings' three); "
                   "seeds trained side by side in separate --out folders combine into one report with --reuse")
    p.add_argument("--epochs", type=int, help="epochs of steps_per_epoch steps for every stage but the teacher "
                   "(which keeps teacher_epochs), instead of the settings': the budget")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="train only these of the seven methods (the "
                   "reference always trains: it measures the baseline); the tables list these only")
    p.add_argument("--augmentation", choices=["standard", "nnunet"], help="the augmentation every method but the "
                   "reference trains with (the spec's `augmentation`; default standard): nnunet gives them the "
                   "reference recipe's, to compare the methods over a baseline augmented as nnU-Net's")
    p.add_argument("--jobs", type=int, default=1, help="train the seeds in this many processes at once (each in "
                   "<out>/seeds/seed_<S>/, log beside it, one torch thread per process unless OMP_NUM_THREADS is "
                   "set), then combine them here by --reuse without retraining")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.tables_from:
        reports, trends = load_published(Path(args.tables_from))
        if not reports:
            print(f"error: no published task report under {args.tables_from}", file=sys.stderr)
            return 2
        print(tables(reports, trends))
        return 0
    data, out = Path(args.data), Path(args.out)
    s = dict(SMOKE if args.smoke else SETTINGS)
    if args.seeds:
        s["seeds"] = sorted(set(args.seeds))
    if args.epochs is not None:
        if args.epochs < 1:
            print("error: --epochs must be at least 1", file=sys.stderr)
            return 2
        s["epochs"] = args.epochs
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if args.methods:  # recorded only when given, so that runs of every method keep their recorded settings
        s["methods"] = [m for m in METHODS if m in args.methods]
    if args.augmentation and args.augmentation != "standard":
        s["augmentation"] = args.augmentation
    tasks = [task for task in TASKS if not args.tasks or task in args.tasks]
    error = missing_folder(data, [rel for task in tasks for rel in TASKS[task]]) or record_settings(out, s)
    if error:
        print(error, file=sys.stderr)
        return 2
    apart = args.jobs > 1 and len(s["seeds"]) > 1
    reuse = [Path(r) for r in args.reuse] + ([seed_folder(out, seed) / task for seed in s["seeds"] for task in tasks]
                                             if apart else [])
    try:  # the spec is checked here, before any process starts
        exps = build_experiments(data, out, s, args.device, args.tasks, reuse)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if apart:
        error = train_seeds_apart(args, out, s["seeds"])
        if error:
            print(error, file=sys.stderr)
            return 2
    print(banner("methods", args.smoke, exps, s, f"methods: {s.get('methods', METHODS)}"), flush=True)
    t0 = time.monotonic()
    run_all(exps, s["seeds"])
    if args.publish:
        publish(exps, Path(args.publish))
    reports = {task: json.loads((exp.workdir / "report.json").read_text()) for task, exp in exps.items()}
    text = tables(reports, {task: reference_trends(exp) for task, exp in exps.items()})
    write_tables(out, text, t0, f"; reports: {out}/<task>/methods/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``sikd`` command.

    sikd run SPEC.yaml --out DIR         train baseline + SIKD, evaluate intra/cross, write the report
    sikd eval RUN_DIR                    re-evaluate a finished experiment (rewrites its report)
    sikd eval MODEL.pt DATASET...        score one model on whole datasets
    sikd predict MODEL.pt IMAGE... --out DIR   masks and overlays for new images (a DICOM series: a SEG)
    sikd export MODEL.pt --format onnx --out DIR   deployable bundle (network, recipe, predict.py, card)
    sikd phantoms OUT --domain NAME -n N synthetic phantom dataset (SYNTHETIC, not patients)
    sikd demo [--out DIR]                phantoms + a small experiment, end to end
    sikd networks                        the registered networks (`sikd models`: its old name)
    sikd plan DATASET [--out SPEC.yaml]  a spec planned from the dataset and this machine (nnU-Net's way), or
                                         another one (--device-memory-gb GIB, --cpu-cores N)
    sikd methods                         the training methods (and X+sikd compositions)
    sikd serve                           the whole service (API, worker, dashboard)
    sikd api | worker | ui               one part of it (the container entry points)

The last two lines come from the service package: it registers them through the ``sikd.commands``
entry-point group (see :func:`_add_plugin_commands`), so this library imports no service code.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sikd_core.errors import SIKDError
from sikd_core.spec import PRESETS

log = logging.getLogger("sikd")

COMMANDS_GROUP = "sikd.commands"


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Let installed packages add subcommands: each entry point of ``sikd.commands`` is a callable
    ``register(subparsers)``. A provider that cannot be imported is skipped (logged), the rest still work."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as e:
            log.debug("sikd command provider %s skipped: %s", ep.value, e)
            continue
        register(sub)


def _parse_override(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SIKDError(f"--set expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from sikd_core.pipeline import ExperimentRun
    from sikd_core.spec import load_spec
    from sikd_core.training import LoggingCallback, ProgressBar

    spec = load_spec(args.spec, **_parse_override(args.set or []))
    # earlier experiments in the output folder's parent (and --reuse-from): finished stages with the same key are
    # reused, and their scores where the evaluation data is the same
    exp = ExperimentRun(spec, args.out, cache_dir=args.cache, device=args.device,
                        reuse_roots=[Path(args.out).resolve().parent, *reuse_from(args.reuse_from)])
    stages = spec.stages()
    mlflow_uri = getattr(args, "mlflow", None) or os.environ.get("SIKD_MLFLOW_TRACKING_URI")
    trackers: dict[tuple[str, int], Any] = {}
    print(f"SIKD Studio: experiment {spec.name!r}: {len(stages)} training stages on {exp.device}, "
          f"train {exp.train_name}, cross {[r.name for r in exp.eval_refs] or 'none'}; output {exp.workdir}",
          file=sys.stderr)

    def callbacks_for(stage: str, seed: int) -> list:
        i = stages.index((stage, seed)) + 1
        cbs = [ProgressBar(desc=f"[{i}/{len(stages)}] {stage} seed {seed}")]
        if mlflow_uri:
            from sikd_core.export.tracking import MlflowCallback

            trackers[(stage, seed)] = MlflowCallback(mlflow_uri, spec.name, stage, seed, params=spec.to_json_dict())
            cbs.append(trackers[(stage, seed)])
        return cbs + [LoggingCallback()] if log.isEnabledFor(logging.INFO) else cbs

    eval_bar = ProgressBar(desc="evaluation")
    try:
        for stage, seed in stages:  # as ExperimentRun.run, with each stage's MLflow run closed after its model.pt
            exp.run_stage(stage, seed, callbacks_for(stage, seed))
            if (stage, seed) in trackers:
                trackers[(stage, seed)].finish(exp.stage_dir(stage, seed))
        report = exp.evaluate([eval_bar])
    finally:
        eval_bar.close()
    if mlflow_uri:
        from sikd_core.export.tracking import log_evaluation

        log_evaluation(mlflow_uri, spec.name, exp.workdir)
    print((exp.workdir / "report.md").read_text())
    print(f"report: {exp.workdir / 'report.md'} and {exp.workdir / 'report.json'}", file=sys.stderr)
    return 0 if report["rows"] else 1


def reuse_from(dirs: list[str]) -> list[Path]:
    """``--reuse-from`` folders as folders of experiment folders: a service's storage root means its
    ``experiments/``; a folder that does not exist is an error."""
    out = []
    for d in dirs:
        path = Path(d).expanduser().resolve()
        if not path.is_dir():
            raise SIKDError(f"--reuse-from {d}: not a folder")
        out.append(path / "experiments" if (path / "experiments").is_dir() else path)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if target.is_dir():
        from sikd_core.pipeline import ExperimentRun
        from sikd_core.spec import load_spec

        if not (target / "spec.json").is_file():
            raise SIKDError(f"{target} is not an experiment folder (no spec.json)")
        if args.datasets:
            raise SIKDError("give datasets only with a MODEL.pt; an experiment folder is evaluated on its spec's")
        exp = ExperimentRun(load_spec(target / "spec.json"), target, cache_dir=args.cache, device=args.device)
        exp.evaluate()
        print((target / "report.md").read_text())
        return 0
    if not args.datasets:
        raise SIKDError("give one or more datasets to evaluate the model on")
    import torch

    from sikd_core.data import load_dataset
    from sikd_core.evaluation import score_cases
    from sikd_core.inference import load_bundle
    from sikd_core.pipeline import path_resolver
    from sikd_core.report import aggregate_rows
    from sikd_core.training import resolve_device

    device = resolve_device(args.device or "auto")
    lm = load_bundle(target, device=device)
    sets = []
    for key in args.datasets:
        ref = path_resolver(key)
        m = load_dataset(ref.path, name=ref.name, scan=False)
        if m.num_classes > lm.num_classes:
            raise SIKDError(f"{ref.name} has {m.num_classes} classes; the model predicts {lm.num_classes}")
        sets.append(("cross", m, [i for i, s in enumerate(m.samples) if s.label is not None]))
    cache = Path(args.cache) if args.cache else Path(args.out or ".") / ".sikd-cache"
    with torch.no_grad():
        cases, units = score_cases({(lm.info.get("method", "model"), lm.info.get("seed", 0)): lm}, sets,
                                   image_size=lm.image_size, in_channels=lm.in_channels,
                                   num_classes=lm.num_classes, cache_dir=cache, device=device)
    rows = aggregate_rows(cases, lm.class_names)
    print("| Dataset | Cases | Dice | IoU | HD95 | HD | unit |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['n_cases']} | {r['dice']:.4f} | {r['iou']:.4f} | {r['hd95']:.2f} | "
              f"{r['hd']:.2f} | {units[r['dataset']]} |")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps({"rows": rows, "cases": cases, "units": units}, indent=1))
        print(f"wrote {out / 'eval.json'}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from sikd_core.data import read_image
    from sikd_core.dicom_seg import is_series_input, predict_dicom_cli
    from sikd_core.inference import load_bundle, predict_images
    from sikd_core.training import resolve_device
    from sikd_core.viz import overlay_contours, overlay_fill, save_png, to_rgb_uint8

    lm = load_bundle(args.model, device=resolve_device(args.device or "auto"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plain = [p for p in args.images if not is_series_input(p)]
    for path in args.images:  # a DICOM series (folder or .zip) -> a DICOM SEG that references it
        if path not in plain:
            print(predict_dicom_cli(lm, Path(path), out))
    images = [read_image(p) for p in plain]
    masks = predict_images(lm, images)
    for path, img, mask in zip(plain, images, masks, strict=True):
        stem = Path(path).stem
        if lm.num_classes == 2 and not args.label_values:
            save_png(out / f"{stem}_mask.png", (mask * 255).astype(np.uint8))
        else:
            save_png(out / f"{stem}_mask.png", mask)
        from sikd_core.data.preprocess import normalize_intensity

        shown = to_rgb_uint8(normalize_intensity(img))
        save_png(out / f"{stem}_overlay.png", overlay_contours(overlay_fill(shown, mask), {"prediction": mask}))
        fractions = ", ".join(f"{n} {float((mask == k).mean()):.1%}" for k, n in enumerate(lm.class_names) if k)
        print(f"{path}: {out / (stem + '_mask.png')} ({fractions})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sikd_core.export import write_bundle, zip_bundle

    out = write_bundle(args.model, args.out, args.format)
    recipe = json.loads((out / "recipe.json").read_text())
    print(f"exported {args.model} as {args.format} to {out} ({recipe['model_file']}, recipe {recipe['recipe']}"
          + (f", ONNX opset {recipe['opset']}" if recipe.get("opset") else "")
          + f"; max logit difference to PyTorch {recipe['check']['max_abs_logit_diff']:.1e})")
    if args.zip:
        print(f"zip: {zip_bundle(out, Path(args.zip))}")
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    from sikd_core.data import generate_phantoms

    path = generate_phantoms(args.out, domain=args.domain, n=args.n, seed=args.seed, size=args.size)
    print(f"wrote {args.n} SYNTHETIC phantom images (domain {args.domain}) to {path}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from sikd_core.methods import method_options

    for m in method_options():
        tag = " (composes: {}+sikd)".format(m["name"]) if m["composable"] else ""
        print(f"{m['name']:10s} {m['description']}{tag}\n{'':10s} {m['reference']}")
    return 0


def cmd_networks(args: argparse.Namespace) -> int:
    from sikd_core.models import available_models, model_info

    for name in available_models():  # built-in and plug-in networks (sikd.networks entry points)
        info = model_info(name)
        origin = f" [plug-in: {info.plugin}]" if info.plugin else ""
        print(f"{name:26s} {info.description}{origin}")
        if info.teacher_note:
            print(f"{'':26s} SIKD teacher: {info.teacher_note}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sikd_core.plan import describe_device, plan, plan_yaml

    dev = None  # this machine's device (and steps timed here), unless another machine's is described
    if args.device_memory_gb is not None or args.cpu_cores is not None:
        dev = describe_device(memory_gib=args.device_memory_gb, cores=args.cpu_cores,
                              source="described on the command line")
    result = plan(args.dataset, eval_datasets=args.eval or [], device=args.device, dev=dev, seeds=args.seeds,
                  budget_minutes=args.budget_minutes, target_steps=args.target_steps, name=args.name,
                  measure=not args.no_measure)
    text = plan_yaml(result)
    if args.out:
        Path(args.out).write_text(text)
        print(f"plan written to {args.out}; run it with: sikd run {args.out} --out DIR", file=sys.stderr)
    else:
        print(text, end="")
    return 0


DEMO_SPEC = {
    "name": "phantom-demo",
    **copy.deepcopy(PRESETS["quick"][1]),  # about 3 minutes for all stages on 2 CPU cores
    "seeds": [0],
    "methods": ["baseline", "sikd"],
    "alpha": 2.0,
    "teacher_input": "class_mean",
    "feature_maps": 2,
}


def cmd_demo(args: argparse.Namespace) -> int:
    import yaml

    from sikd_core.data import generate_phantoms

    out = Path(args.out)
    data = out / "data"
    train = data / "vendor_a"
    if not (train / "images").is_dir():
        generate_phantoms(train, domain="vendor_a", n=args.n, seed=1, size=128)
        for d in ("vendor_b", "vendor_c"):
            generate_phantoms(data / d, domain=d, n=max(20, args.n // 3), seed=2, size=128)
    spec = {**DEMO_SPEC, "train_dataset": str(train), "eval_datasets": [str(data / "vendor_b"), str(data / "vendor_c")],
            "epochs": args.epochs}
    spec_path = out / "demo.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"demo: SYNTHETIC phantoms in {data}; spec {spec_path}", file=sys.stderr)
    ns = argparse.Namespace(spec=str(spec_path), out=str(out / "run"), cache=None, device=args.device, set=[])
    return cmd_run(ns)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sikd", description="SIKD Studio: shape-intensity knowledge distillation "
                                "for robust medical image segmentation")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment spec (YAML/JSON): baseline, teacher, student, evaluation")
    r.add_argument("spec")
    r.add_argument("--out", required=True, help="experiment folder (re-running resumes it)")
    r.add_argument("--cache", help="preprocessed-data cache folder (default OUT/cache)")
    r.add_argument("--device", help="override the spec's device (cpu, cuda, cuda:N)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (YAML value)")
    r.add_argument("--mlflow", metavar="URI", help="log every stage to this MLflow tracking server "
                   "(default $SIKD_MLFLOW_TRACKING_URI; needs the mlflow extra)")
    r.add_argument("--reuse-from", action="append", metavar="DIR", default=[],
                   help="also reuse finished stages and scores (same key: same data content, settings, code) from "
                        "the experiment folders in DIR: another CLI folder, or a service's storage root (its "
                        "experiments/); repeatable. The output folder's siblings are always searched")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="evaluate an experiment folder, or a model on datasets")
    e.add_argument("target", help="experiment folder, or a model.pt bundle")
    e.add_argument("datasets", nargs="*", help="dataset folders (with a model.pt)")
    e.add_argument("--out", help="write eval.json here")
    e.add_argument("--cache")
    e.add_argument("--device")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="segment images with a trained model.pt")
    pr.add_argument("model")
    pr.add_argument("images", nargs="+", help="image files; a folder or .zip holding one DICOM series gives a "
                    "DICOM SEG (<name>_seg.dcm) that references it")
    pr.add_argument("--out", required=True)
    pr.add_argument("--device")
    pr.add_argument("--label-values", action="store_true",
                    help="write class indices even for binary models (default: 0/255 for binary)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export a model.pt as a deployable ONNX or TorchScript bundle")
    ex.add_argument("model")
    ex.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    ex.add_argument("--out", required=True, help="bundle folder (network, recipe.json, predict.py, model card)")
    ex.add_argument("--zip", help="also write the bundle as this .zip file")
    ex.set_defaults(func=cmd_export)

    ph = sub.add_parser("phantoms", help="write a SYNTHETIC cardiac-like phantom dataset")
    ph.add_argument("out")
    ph.add_argument("--domain", required=True)
    ph.add_argument("-n", type=int, default=100)
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--size", type=int, default=128)
    ph.set_defaults(func=cmd_phantoms)

    d = sub.add_parser("demo", help="generate phantoms and run a small baseline-vs-SIKD experiment")
    d.add_argument("--out", default="sikd-demo")
    d.add_argument("-n", type=int, default=120, help="training phantoms")
    d.add_argument("--epochs", type=int, default=DEMO_SPEC["epochs"])
    d.add_argument("--device")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("networks", aliases=["models"], help="list the registered networks (alias: models, its old "
                       "name)")
    m.set_defaults(func=cmd_networks)
    pl = sub.add_parser("plan", help="plan a spec (network, widths, image size, batch, epochs, estimated time) "
                        "from a dataset's fingerprint and this machine, printed as YAML for sikd run")
    pl.add_argument("dataset", help="the training dataset (folder, nnU-Net dataset or MONAI datalist)")
    pl.add_argument("--eval", nargs="*", metavar="DATASET", help="cross-evaluation datasets for the spec")
    pl.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    other = pl.add_mutually_exclusive_group()
    other.add_argument("--device-memory-gb", type=float, default=None, metavar="GIB",
                       help="plan for another machine's GPU with this much memory (no step timing: no estimate)")
    other.add_argument("--cpu-cores", type=int, default=None, metavar="N",
                       help="plan for another machine's CPU with N cores (no step timing: no estimate)")
    pl.add_argument("--seeds", type=int, nargs="+", default=[0])
    pl.add_argument("--budget-minutes", type=float, default=None,
                    help="fit the epochs into this wall time (default: 30 on a CPU, 240 on a GPU)")
    pl.add_argument("--target-steps", type=int, default=3000, help="optimiser steps per stage before the budget")
    pl.add_argument("--name", default=None, help="the spec's name (default: DATASET-planned)")
    pl.add_argument("--no-measure", action="store_true", help="skip timing training steps (no run-time estimate)")
    pl.add_argument("--out", default=None, help="write the YAML here instead of printing it")
    pl.set_defaults(func=cmd_plan)
    mt = sub.add_parser("methods", help="list the training methods (baseline, sikd, sdm, gin, maxstyle, X+sikd)")
    mt.set_defaults(func=cmd_methods)

    _add_plugin_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except SIKDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

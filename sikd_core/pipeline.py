"""The experiment pipeline: baseline, SIKD teacher -> student, evaluation and report.

Every stage is idempotent and resumable. A stage writes its checkpoints under
``workdir/seed_<s>/<stage>/`` while it trains (``latest.pt`` every epoch, ``best.pt`` on every new
best validation Dice), resumes from ``latest.pt`` when it is run again, and ends by writing
``model.pt`` (a bundle of the best weights) and ``done.json``; a finished stage is never retrained.
The CLI runs all stages in one process (:meth:`ExperimentRun.run`); the service's workers run
:meth:`ExperimentRun.run_stage` and :meth:`ExperimentRun.evaluate` as separate jobs on the same workdir.

Layout of ``workdir``::

    spec.json  splits.json
    seed_0/baseline/{latest.pt, best.pt, history.json, model.pt, done.json}
    seed_0/teacher/...  seed_0/student/...
    eval/cases.json                         per-case scores of every model and dataset
    eval/predictions/<method>/<dataset>/    predicted masks (first seed), PNG class maps
    eval/overlays/<dataset>/ + overlays.json      contour overlays: worst cases, largest differences
    eval/features/<dataset>/ + features.json      penultimate feature maps (the paper's Fig. 7)
    report.json  report.md
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.classmean import class_mean_image, label_map_image
from sikd_core.data import Manifest
from sikd_core.data.fingerprint import manifest_fingerprint
from sikd_core.errors import SIKDError, SpecError
from sikd_core.evaluation import dataset_unit, score_cases
from sikd_core.experiment_data import DatasetRef, ExperimentData, path_resolver
from sikd_core.health import (
    convergence_findings,
    evaluation_findings,
    health_section,
    mark_comparisons,
    reference_convergence,
    reference_findings,
)
from sikd_core.inference import LoadedModel, load_bundle, save_bundle
from sikd_core.methods import MethodTrainer, create_method, parse_method
from sikd_core.methods.plan import stage_key
from sikd_core.methods.reference import (
    RECIPE,
    REFERENCE,
    REFERENCE_NETWORK,
    ReferenceAugmenter,
    ReferenceTrainer,
    reference_filters,
    shared_augmenter,
)
from sikd_core.models import create_model, model_info
from sikd_core.render import render_features, render_overlays
from sikd_core.report import aggregate_rows, baseline_strength, method_comparisons, render_markdown, summarise
from sikd_core.reuse import experiment_folders, find_stage, link_stage
from sikd_core.score_reuse import (
    ScoreIndex,
    case_order,
    link_predictions,
    merge_cases,
    score_key,
    write_index,
)
from sikd_core.spec import ExperimentSpec, method_of_stage, stage_of_method, with_current_names
from sikd_core.training import (
    Callback,
    DistillationTrainer,
    HealthMonitor,
    TrainConfig,
    Trainer,
    resolve_device,
)
from sikd_core.viz import (
    save_png,
)
from sikd_core.workdir import safe_name, write_json

__all__ = ["TRAIN_STAGES", "DatasetRef", "ExperimentRun", "is_train_stage", "path_resolver"]

log = logging.getLogger("sikd_core.pipeline")

#: The fixed stage kinds; a plug-in method's stage is its method name (``gin``, ``gin+sikd``, ...).
TRAIN_STAGES = ("baseline", "teacher", "student")
#: Stage -> method name in results (the teacher is not evaluated: it needs labels at inference).


def is_train_stage(stage: str) -> bool:
    """A known stage kind or a registered method's stage (``sdm``, ``gin+sikd``...)."""
    if stage in TRAIN_STAGES:
        return True
    try:
        return parse_method(stage)[0] != "baseline"
    except SpecError:
        return False


class ExperimentRun(ExperimentData):
    """One experiment spec bound to a working directory: the runner (the service's database row is
    :class:`sikd_service.tables.Experiment`; a worker builds an ``ExperimentRun`` from it for each job).

    Args:
        spec: the experiment.
        workdir: where checkpoints, models and reports go (created).
        resolver: maps the spec's dataset keys to folders (paths for the CLI, ids for the service).
        cache_dir: where preprocessed arrays are cached (shared between experiments; default
            ``workdir/cache``).
        device: overrides ``spec.device``.
        checkpoint_interval_s: how often a training stage writes ``latest.pt`` (0: every epoch).
        reuse_roots: folders holding other experiment folders; a stage whose key matches a finished stage there
            is linked instead of trained (:mod:`sikd_core.reuse`; not when the spec says ``reuse: false``).
        fingerprints: the training datasets' content fingerprints, when the caller knows them (the service
            stores them); else computed from the files when a stage key is first needed.
        eval_fingerprints: the same for the evaluation datasets, by spec key (else computed when needed).
        score_sources: earlier experiment folders whose per-case scores the evaluation may reuse, each with the
            origin a reused score records (:mod:`sikd_core.score_reuse`); default: those under ``reuse_roots``.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        workdir: str | Path,
        *,
        resolver: Callable[[str], DatasetRef] = path_resolver,
        cache_dir: str | Path | None = None,
        device: str | None = None,
        checkpoint_interval_s: float = 30.0,
        reuse_roots: Sequence[str | Path] = (),
        fingerprints: Sequence[str] | None = None,
        eval_fingerprints: Mapping[str, str] | None = None,
        score_sources: Mapping[Path, dict[str, Any]] | None = None,
    ):
        self.spec = spec
        self._eval_fingerprints = dict(eval_fingerprints or {})
        self._score_sources = score_sources
        self.reuse_roots = [Path(r) for r in reuse_roots]
        self._fingerprints = list(fingerprints) if fingerprints is not None else None
        self.checkpoint_interval_s = checkpoint_interval_s
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.resolver = resolver
        self.cache_dir = Path(cache_dir) if cache_dir else self.workdir / "cache"
        self.device = resolve_device(device or spec.device)
        spec_path = self.workdir / "spec.json"
        current = spec.to_json_dict()
        if spec_path.exists():
            stored = with_current_names(json.loads(spec_path.read_text()))  # a folder from before the rename
            training_keys = [k for k in current if k not in ("device", "name", "on_unhealthy", "reuse")]
            # a key the stored spec lacks is newer than the experiment; what it sets was stored explicitly then
            changed = [k for k in training_keys if k in stored and stored[k] != current[k]]
            if changed:
                raise SpecError(f"{self.workdir} holds an experiment with a different spec (changed: "
                                f"{', '.join(changed)}); use a new output folder")
        write_json(spec_path, current)

    # --------------------------------------------------------------------------- stages
    def stage_dir(self, stage: str, seed: int) -> Path:
        return self.workdir / f"seed_{seed}" / stage

    def is_done(self, stage: str, seed: int) -> bool:
        return (self.stage_dir(stage, seed) / "done.json").is_file()

    def stage_record(self, stage: str, seed: int) -> dict[str, Any] | None:
        p = self.stage_dir(stage, seed) / "done.json"
        return json.loads(p.read_text()) if p.is_file() else None

    @property
    def fingerprints(self) -> list[str]:
        """Content fingerprints of the training datasets, in the spec's order (:mod:`sikd_core.data.fingerprint`)."""
        if self._fingerprints is None:
            self._fingerprints = [manifest_fingerprint(m) for m in self.train_manifests]
        return self._fingerprints

    def stage_key(self, stage: str, seed: int) -> str:
        """What identifies this stage's trained model (:func:`sikd_core.methods.plan.stage_key`)."""
        planned = next(p for p in self.spec.plan() if (p.stage, p.seed) == (stage, seed))
        return stage_key(self.spec, planned, self.fingerprints)

    def network(self, stage: str) -> str:
        """The registered network a stage trains: the spec's, or the reference recipe's own."""
        return REFERENCE_NETWORK if stage == REFERENCE else self.spec.network

    def network_kwargs(self, stage: str) -> dict[str, Any]:
        """The arguments of a stage's network: the spec's (the teacher without skips where the network can drop
        them), or the reference recipe's own widths."""
        if stage == REFERENCE:
            return {"filters": reference_filters(self.spec.network, self.spec.network_kwargs, self.spec.image_size)}
        kw = dict(self.spec.network_kwargs)
        if stage == "teacher" and model_info(self.spec.network).skip_switch and not self.spec.teacher_skip_connections:
            kw["skip_connections"] = False
        return kw

    def build_model(self, stage: str, seed: int) -> torch.nn.Module:
        # Baseline and student start from identical weights (same seed): the comparison is paired.
        torch.manual_seed(seed)
        return create_model(self.network(stage), self.in_channels, self.num_classes, **self.network_kwargs(stage))

    def teacher_input_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        k, c = self.num_classes, self.in_channels
        if self.spec.teacher_input == "class_mean":
            return lambda images, labels: class_mean_image(images, labels, k, check_labels=False)  # Trainer checks
        if self.spec.teacher_input == "label_map":
            return lambda images, labels: label_map_image(labels, k, c).to(images.dtype)
        return None  # "image": the teacher sees the original image

    def _train_config(self, stage: str, seed: int) -> TrainConfig:
        s = self.spec
        config = TrainConfig(epochs=s.effective_teacher_epochs if stage == "teacher" else s.epochs,
                             batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay, seed=seed,
                             steps_per_epoch=s.steps_per_epoch, loss=s.loss, amp=s.amp, device=str(self.device),
                             checkpoint_interval_s=self.checkpoint_interval_s)
        if stage == REFERENCE:  # the same budget, its own recipe (sikd_core.methods.reference)
            config = replace(config, lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"], loss="dice_ce",
                             poly_power=RECIPE["poly_power"])
        return config

    def run_stage(self, stage: str, seed: int, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Train one stage (or return its record if it is already done)."""
        if not is_train_stage(stage):
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(TRAIN_STAGES)} or a method name")
        if (stage, seed) not in self.spec.stages():
            raise SpecError(f"stage {stage!r} with seed {seed} is not part of this experiment")
        record = self.stage_record(stage, seed)
        if record is not None:
            return record
        key = self.stage_key(stage, seed)
        found = find_stage(self.reuse_roots, key, exclude=self.workdir) if self.spec.reuse else None
        if found is not None:
            log.info("%s (seed %d): reused from %s", stage, seed, found)
            return link_stage(found, self.stage_dir(stage, seed), reused_from={"folder": str(found.parents[1])})
        out = self.stage_dir(stage, seed)
        out.mkdir(parents=True, exist_ok=True)
        train, val = self.split_tensors("train"), self.split_tensors("val")
        model = self.build_model(stage, seed)
        method = method_of_stage(stage) or "sikd"  # the teacher belongs to the SIKD model
        meta = {"class_names": self.class_names, "seed": seed, "method": method}
        if not any(isinstance(cb, HealthMonitor) for cb in callbacks):  # CLI and workers alike get the checks
            callbacks = [*callbacks, HealthMonitor(self.spec.on_unhealthy, method=method,
                                                   teacher_input=self.spec.teacher_input if stage == "teacher" else None)]
        common: dict[str, Any] = dict(num_classes=self.num_classes, stage=stage, checkpoint_dir=out,
                                      callbacks=callbacks, meta=meta,
                                      augmenter=shared_augmenter(self.spec.augment, self.spec.augmentation))
        config = self._train_config(stage, seed)
        base, distilled = (stage, False) if stage in TRAIN_STAGES else parse_method(stage)
        teacher = None
        if stage == "student" or distilled:
            teacher_bundle = self.stage_dir("teacher", seed) / "model.pt"
            if not self.is_done("teacher", seed):
                raise SIKDError(f"the teacher of seed {seed} must be trained before its student ({stage})")
            teacher = load_bundle(teacher_bundle, device=self.device).model
        if stage == "student":
            assert teacher is not None
            trainer: Trainer = DistillationTrainer(model, train, val, config, teacher=teacher, alpha=self.spec.alpha,
                                                   teacher_input_fn=self.teacher_input_fn(),
                                                   head_from_teacher=self.spec.student_head_init == "teacher", **common)
        elif stage == "teacher":
            trainer = Trainer(model, train, val, config, input_fn=self.teacher_input_fn(), **common)
        elif stage == "baseline":
            trainer = Trainer(model, train, val, config, **common)
        elif stage == REFERENCE:
            trainer = ReferenceTrainer(model, train, val, config, **dict(common, augmenter=ReferenceAugmenter()))
        else:  # a plug-in method, with SIKD's distillation on top for "X+sikd"
            method = create_method(base, model, in_channels=self.in_channels, num_classes=self.num_classes)
            trainer = MethodTrainer(model, train, val, config, method=method, teacher=teacher, alpha=self.spec.alpha,
                                    teacher_input_fn=self.teacher_input_fn(),
                                    head_from_teacher=self.spec.student_head_init == "teacher", **common)
        t0 = time.monotonic()
        result = trainer.fit()
        info = dict(network=self.network(stage), network_kwargs=self.network_kwargs(stage), in_channels=self.in_channels,
                    num_classes=self.num_classes, class_names=self.class_names, image_size=self.spec.image_size,
                    normalization={"method": "percentile", "lower": 0.5, "upper": 99.5},
                    method=method_of_stage(stage) or stage, stage=stage, seed=seed,
                    teacher_input=self.spec.teacher_input if stage == "teacher" else None,
                    spec=self.spec.to_json_dict(), train_dataset=self.train_name,
                    best_val_dice=result.best_score if math.isfinite(result.best_score) else None,
                    best_epoch=result.best_epoch)
        save_bundle(out / "model.pt", trainer.model, **info)
        record = {"stage": stage, "seed": seed, "method": info["method"], "key": key,
                  "best_val_dice": info["best_val_dice"] if val[0].shape[0] else None,
                  "best_epoch": result.best_epoch, "epochs": result.epochs, "seconds": result.seconds,
                  "wall_seconds": time.monotonic() - t0, "warnings": result.warnings, "health": result.health,
                  "model_path": str(out / "model.pt"), "history": result.history}
        write_json(out / "done.json", record)
        # The bundle holds the best weights; the optimiser state is no longer needed.
        for name in ("latest.pt", "best.pt"):
            (out / name).unlink(missing_ok=True)
        return record

    # --------------------------------------------------------------------------- evaluation
    def _eval_models(self) -> dict[tuple[str, int], LoadedModel]:
        missing = [f"{st} (seed {sd})" for st, sd in self.spec.stages() if not self.is_done(st, sd)]
        if missing:
            raise SIKDError(f"cannot evaluate before every stage is trained; missing: {', '.join(missing)}")
        models = {}
        for stage, seed in self.spec.stages():
            method = method_of_stage(stage)
            if method is not None:
                models[(method, seed)] = load_bundle(self.stage_dir(stage, seed) / "model.pt", device=self.device)
        return models

    def _eval_sets(self) -> list[tuple[str, Manifest, list[int]]]:
        sets = [("intra", m, list(sp["test"])) for m, sp in zip(self.train_manifests, self.source_splits, strict=True)]
        for ref in self.eval_refs:
            m = self._load(ref)
            if m.num_classes > self.num_classes:
                raise SIKDError(f"evaluation dataset {ref.name!r} has {m.num_classes} classes "
                                f"({', '.join(m.class_names)}) but the model was trained on {self.num_classes} "
                                f"({', '.join(self.class_names)}); cross-dataset evaluation needs the same task")
            labelled = [i for i, s in enumerate(m.samples) if s.label is not None]
            if not labelled:
                raise SIKDError(f"evaluation dataset {ref.name!r} has no labelled images")
            sets.append(("cross", m, labelled))
        return sets

    def evaluate(self, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Score every final model on the intra test split and every cross dataset; write the report.
        Progress goes to ``callbacks`` (:meth:`Callback.on_eval_progress`), as training's does."""
        models = self._eval_models()
        first_seed = self.spec.seeds[0]
        sets = self._eval_sets()
        eval_dir = self.workdir / "eval"
        saver = None
        if self.spec.save_predictions:
            def saver(method: str, seed: int, manifest: Manifest, members: list[int], masks: list[np.ndarray]) -> None:
                if seed == first_seed:
                    self._save_prediction(eval_dir, method, manifest.name, manifest, members, masks)
        cases, units, entries = self._score(models, sets, saver=saver, callbacks=callbacks)
        write_json(eval_dir / "cases.json", cases)
        write_index(eval_dir, entries)
        report = self._report(cases, units)
        report["reused_scores"] = [{k: e[k] for k in ("method", "seed", "dataset", "split", "reused_from")}
                                   for e in entries if e["reused_from"]]
        for cb in callbacks:
            cb.on_eval_progress(1.0, "rendering overlays and feature maps")
        report["overlays"] = (render_overlays(eval_dir, cases, sets, first_seed, in_channels=self.in_channels)
                              if self.spec.save_predictions else [])
        report["features"] = render_features(
            eval_dir, sets, self._feature_nets(models, first_seed) if self.spec.feature_maps else [], n=self.spec.feature_maps, data_for=self._data_for,
            teacher_input_fn=self.teacher_input_fn(), device=self.device)
        write_json(self.workdir / "report.json", report)
        (self.workdir / "report.md").write_text(render_markdown(report), encoding="utf-8")
        return report

    def _score(self, models: dict[tuple[str, int], LoadedModel], sets: list[tuple[str, Manifest, list[int]]], *,
               saver: Any, callbacks: Sequence[Callback]) -> tuple[list[dict[str, Any]], dict[str, str],
                                                                   list[dict[str, Any]]]:
        """Per-case scores of every model on every set: those an earlier evaluation made of the same model on the
        same data are taken from it (:mod:`sikd_core.score_reuse`), the rest computed. Returns the records (in
        :func:`score_cases`' order), the unit per dataset and the score index entries."""
        first_seed = self.spec.seeds[0]
        sources = self._score_sources
        if sources is None:
            sources = experiment_folders(self.reuse_roots, exclude=self.workdir)
        index = ScoreIndex(sources) if self.spec.reuse and sources else None
        unique_names = len({(sp, m.name) for sp, m, _ in sets}) == len(sets)
        cross = sets[len(self.train_manifests):]  # the eval datasets' sets, in eval_refs' order
        fps = [*self.fingerprints, *(self._eval_fingerprints.get(r.key) or manifest_fingerprint(m)
                                     for r, (_, m, _) in zip(self.eval_refs, cross, strict=True))]
        settings = {"image_size": list(self.spec.image_size), "in_channels": self.in_channels,
                    "num_classes": self.num_classes}
        entries: list[dict[str, Any]] = []
        reused: list[dict[str, Any]] = []
        todo: list[dict[tuple[str, int], LoadedModel]] = []
        for (split, manifest, indices), fp in zip(sets, fps, strict=True):
            sample_keys = [manifest.samples[i].key for i in indices]
            cases = case_order(manifest, indices)
            todo.append({})
            for (method, seed), lm in models.items():
                rec = self.stage_record(stage_of_method(method), seed) or {}
                key = score_key(rec["key"], fp, split, sample_keys, settings) if rec.get("key") else None
                need = saver is not None and seed == first_seed
                found = (index.find(key, case_ids=cases, need_predictions=need)
                         if index is not None and key is not None and unique_names else None)
                if found is not None and need and not link_predictions(
                        found.predictions, self.workdir / "eval" / "predictions" / method / safe_name(manifest.name),
                        sample_keys):
                    found = None
                if found is None:
                    todo[-1][(method, seed)] = lm
                else:
                    reused += [{**c, "dataset": manifest.name, "split": split} for c in found.cases]
                    log.info("scores of %s (seed %d) on %s reused from %s", method, seed, manifest.name, found.origin)
                if key is not None:
                    entries.append({"key": key, "method": method, "seed": seed, "dataset": manifest.name,
                                    "split": split, "predictions": need,
                                    "reused_from": found.origin if found is not None else None})
        computed: list[dict[str, Any]] = []
        units = {m.name: dataset_unit(m, idx) for _, m, idx in sets}
        images = [len(idx) * bool(t) for (_, _, idx), t in zip(sets, todo, strict=True)]
        done = 0
        for s, (one, chosen) in enumerate(zip(sets, todo, strict=True)):
            if not chosen:
                continue
            progress = [_Share(callbacks, done / sum(images), images[s] / sum(images))] if callbacks else []
            out, _ = score_cases(chosen, [one], image_size=self.spec.image_size, in_channels=self.in_channels,
                                 num_classes=self.num_classes, cache_dir=self.cache_dir, device=self.device,
                                 prepared={m.name: d for m, d in zip(self.train_manifests, self.source_data,
                                                                     strict=True)},
                                 on_prediction=saver, callbacks=progress)
            computed += out
            done += images[s]
        return merge_cases(sets, list(models), computed + reused), units, entries

    def _save_prediction(self, eval_dir: Path, method: str, dataset: str, manifest: Manifest,
                         members: list[int], masks: list[np.ndarray]) -> None:
        folder = eval_dir / "predictions" / method / safe_name(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        for i, mask in zip(members, masks, strict=True):
            path = folder / f"{safe_name(manifest.samples[i].key)}.png"
            path.unlink(missing_ok=True)  # a reused one is a hard link: never write through it
            save_png(path, mask)

    def _report(self, cases: list[dict[str, Any]], units: dict[str, str]) -> dict[str, Any]:
        rows = aggregate_rows(cases, self.class_names)
        stages = []
        warnings: list[str] = []
        findings: list[dict[str, Any]] = []
        records = {}
        for stage, seed in self.spec.stages():
            rec = records[(stage, seed)] = self.stage_record(stage, seed) or {}
            stages.append({k: rec.get(k) for k in ("stage", "seed", "best_val_dice", "best_epoch", "epochs",
                                                      "seconds", "health")})
            warnings += [f"{stage} (seed {seed}): {w}" for w in rec.get("warnings", [])]
            findings += rec.get("health") or []
        findings += evaluation_findings(cases, records)
        trends = reference_convergence(records)
        findings += convergence_findings(trends)
        strength = baseline_strength(cases, self.spec.methods,
                                     all(t["converged"] for t in trends.values()) if trends else None)
        findings += reference_findings(strength, self.spec.seeds)
        health = health_section(findings, sorted({(r["method"], r["seed"]) for r in rows}))
        comparisons = method_comparisons(cases, self.spec.methods, strength)
        mark_comparisons(comparisons, health)
        for f in findings:
            log.warning("health: %s", f["message"])
        all_mm = bool(units) and all(u == "mm" for u in units.values())
        return {
            "format": "sikd-report/1",
            "spec": self.spec.to_json_dict(),
            "train_dataset": self.train_name,
            "train_datasets": [m.name for m in self.train_manifests],
            "methods": list(self.spec.methods),
            "eval_datasets": [r.name for r in self.eval_refs],
            "class_names": self.class_names,
            "n_test_cases": sum(len({m.samples[i].case_id for i in sp["test"]})
                                for m, sp in zip(self.train_manifests, self.source_splits, strict=True)),
            "units": "mm" if all_mm else "px",
            "dataset_units": units,
            "rows": rows,
            "summary": summarise(rows),
            "comparisons": comparisons,
            "baseline_strength": strength,
            "stages": stages,
            "warnings": warnings,
            "health": health,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    # --------------------------------------------------------------------------- pictures
    def _feature_nets(self, models: dict[tuple[str, int], LoadedModel], seed: int) -> list[tuple[str, torch.nn.Module, bool]]:
        """Baseline, teacher and student of ``seed`` (those that exist) for the feature-map pictures."""
        nets: list[tuple[str, torch.nn.Module, bool]] = []
        if ("baseline", seed) in models:
            nets.append(("baseline", models[("baseline", seed)].model, False))
        if self.is_done("teacher", seed):
            nets.append(("teacher", load_bundle(self.stage_dir("teacher", seed) / "model.pt", self.device).model, True))
        if ("sikd", seed) in models:
            nets.append(("sikd", models[("sikd", seed)].model, False))
        return nets

    # --------------------------------------------------------------------------- everything
    def run(self, callbacks_for: Callable[[str, int], Sequence[Callback]] | None = None,
            eval_callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
        """Train every stage that is not done yet, then evaluate and write the report."""
        for stage, seed in self.spec.stages():
            cbs = callbacks_for(stage, seed) if callbacks_for else ()
            self.run_stage(stage, seed, cbs)
        return self.evaluate(eval_callbacks)




class _Share(Callback):
    """Evaluation progress of one part (``share`` of the whole, from ``start``) reported as the whole's."""

    def __init__(self, callbacks: Sequence[Callback], start: float, share: float):
        self.callbacks, self.start, self.share = list(callbacks), start, share

    def on_eval_progress(self, fraction: float, message: str) -> None:
        for cb in self.callbacks:
            cb.on_eval_progress(self.start + self.share * fraction, message)

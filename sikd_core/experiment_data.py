"""The data half of an experiment: the datasets a spec names, their splits and their prepared tensors.

:class:`ExperimentData` is the base of :class:`sikd_core.pipeline.ExperimentRun`: it resolves the spec's dataset
keys (:class:`DatasetRef`), loads and checks the manifests, splits every training source on its own (grouped,
seeded, recorded in ``splits.json`` so a changed dataset is refused) and prepares (resizes, caches) the arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sikd_core.data import Manifest, PreparedData, load_dataset, make_splits, prepare
from sikd_core.data.splits import assert_no_leakage
from sikd_core.errors import SIKDError, SpecError
from sikd_core.spec import ExperimentSpec
from sikd_core.workdir import write_json


@dataclass(frozen=True)
class DatasetRef:
    """A dataset the spec names: ``key`` as written in the spec, its folder and a display name.

    ``manifest`` may carry an already validated manifest (the service stores one at upload), which
    saves re-scanning every file; without it the dataset is read and checked in full.
    """

    key: str
    path: Path
    name: str
    manifest: Manifest | None = field(default=None, compare=False, repr=False)


def path_resolver(key: str) -> DatasetRef:
    """The CLI's resolver: dataset keys are folder (or datalist JSON) paths."""
    path = Path(key).expanduser()
    if not path.exists():
        raise SpecError(f"dataset not found: {key} (give the path of a dataset folder or datalist JSON)")
    path = path.resolve()
    name = path.stem if path.is_file() else path.name
    return DatasetRef(key=key, path=path, name=name)



class ExperimentData:
    """Datasets, splits and prepared tensors of ``spec`` (``workdir``, ``resolver``, ``cache_dir`` and ``device``
    are set by the subclass's constructor)."""

    spec: ExperimentSpec
    workdir: Path
    cache_dir: Path
    device: torch.device
    resolver: Any
    @cached_property
    def train_refs(self) -> list[DatasetRef]:
        """The training sources (one, or several trained on together)."""
        refs = [self.resolver(k) for k in self.spec.train_datasets]
        names = [r.name for r in refs]
        if len(set(names)) != len(names):  # keep report rows unambiguous
            refs = [DatasetRef(r.key, r.path, f"{r.name}#{i + 1}", r.manifest) for i, r in enumerate(refs)]
        return refs

    @property
    def train_ref(self) -> DatasetRef:
        return self.train_refs[0]

    @property
    def train_name(self) -> str:
        """The training data's display name: the source names joined with " + "."""
        return " + ".join(r.name for r in self.train_refs)

    @cached_property
    def eval_refs(self) -> list[DatasetRef]:
        refs = [self.resolver(k) for k in self.spec.eval_datasets]
        names = [r.name for r in self.train_refs] + [r.name for r in refs]
        if len(set(names)) != len(names):  # keep report rows unambiguous
            refs = [DatasetRef(r.key, r.path, f"{r.name}#{i + 1}", r.manifest) for i, r in enumerate(refs)]
        return refs

    def _load(self, ref: DatasetRef) -> Manifest:
        if ref.manifest is not None:
            return ref.manifest if ref.manifest.name == ref.name else replace(ref.manifest, name=ref.name)
        return load_dataset(ref.path, name=ref.name, mask_mode=self.spec.mask_mode, scan=True)

    @cached_property
    def train_manifests(self) -> list[Manifest]:
        ms = [self._load(r) for r in self.train_refs]
        first = ms[0]
        for m in ms[1:]:
            if m.num_classes != first.num_classes or m.in_channels != first.in_channels:
                raise SIKDError(f"training sources must share the task: {first.name!r} has {first.num_classes} "
                                f"classes and {first.in_channels} channel(s), {m.name!r} {m.num_classes} and "
                                f"{m.in_channels}")
        return ms

    @property
    def train_manifest(self) -> Manifest:
        """The first training source (class names, channels); see :attr:`train_manifests` for all."""
        return self.train_manifests[0]

    @property
    def num_classes(self) -> int:
        return self.train_manifest.num_classes

    @property
    def in_channels(self) -> int:
        return self.train_manifest.in_channels

    @property
    def class_names(self) -> list[str]:
        return list(self.train_manifest.class_names)

    @cached_property
    def source_splits(self) -> list[dict[str, list[int]]]:
        """Train/val/test sample indices of every training source, split per source (grouped, seeded)."""
        outs, entries = [], []
        for m in self.train_manifests:
            sp = make_splits(m, val_fraction=self.spec.val_fraction, test_fraction=self.spec.test_fraction,
                             seed=self.spec.split_seed)
            assert_no_leakage(m, sp)
            out = {"train": list(sp.train), "val": list(sp.val), "test": list(sp.test)}
            for split in ("train", "test"):
                if not out[split]:
                    raise SIKDError(f"the {split} split of {m.name!r} is empty: the dataset is too small for these "
                                    "fractions" + ("" if split == "train" else "; no intra score can be computed"))
            outs.append(out)
            entries.append({"dataset": m.name, "sizes": {k: len(v) for k, v in out.items()},
                            "cases": {k: len({m.samples[i].case_id for i in v}) for k, v in out.items()},
                            "keys": {k: [m.samples[i].key for i in v] for k, v in out.items()}})
        record = dict(entries[0]) if len(entries) == 1 else {"dataset": self.train_name, "sources": entries}
        path = self.workdir / "splits.json"
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("keys") != record.get("keys") or stored.get("sources") != record.get("sources"):
                raise SIKDError(f"the training dataset changed since this experiment split it ({path}); "
                                "start a new experiment")
        else:
            write_json(path, record)
        return outs

    @property
    def splits(self) -> dict[str, list[int]]:
        """The first source's splits (the only one for a single training dataset)."""
        return self.source_splits[0]

    @cached_property
    def source_data(self) -> list[PreparedData]:
        return [prepare(m, self.spec.image_size, self.cache_dir, in_channels=self.in_channels)
                for m in self.train_manifests]

    @property
    def train_data(self) -> PreparedData:
        return self.source_data[0]

    def split_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (float16, ``N,C,H,W``) and labels (uint8, ``N,H,W``) of a split (every source's, concatenated),
        in memory on CPU."""
        parts = []
        for data, splits in zip(self.source_data, self.source_splits, strict=True):
            pos = {m: p for p, m in enumerate(data.indices)}
            rows = np.array([pos[i] for i in splits[split]], dtype=np.int64)
            parts.append((data.images[rows], data.labels[rows]))
        images = torch.from_numpy(np.ascontiguousarray(np.concatenate([p[0] for p in parts])))
        labels = torch.from_numpy(np.ascontiguousarray(np.concatenate([p[1] for p in parts])))
        if self.device.type == "cuda":
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels

    def _data_for(self, manifest: Manifest) -> PreparedData:
        """The prepared (resized, cached) data of an evaluated dataset; the training set's is already loaded."""
        for m, d in zip(self.train_manifests, self.source_data, strict=True):
            if manifest is m:
                return d
        return prepare(manifest, self.spec.image_size, self.cache_dir, in_channels=self.in_channels)

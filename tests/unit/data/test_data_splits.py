"""Grouped, deterministic splits; fixed splits; leakage check."""

from __future__ import annotations

import logging

import pytest

from sikd_core.data import Manifest, Sample, Splits, assert_no_leakage, make_splits
from sikd_core.errors import DatasetError


def _manifest(groups: list[tuple[str, int]], fixed: dict[str, str] | None = None, volumes: bool = False) -> Manifest:
    """Fake manifest (no files): ``groups`` = [(group id, samples in it)]."""
    samples = []
    for g, n in groups:
        for k in range(n):
            case = g if volumes else f"{g}_{k}"
            samples.append(
                Sample(
                    image=(f"/x/{case}.png",), label=f"/y/{case}.png", case_id=case, group_id=g, dataset="fake",
                    slice_index=k if volumes else None, num_slices=n if volumes else None,
                    fixed_split=(fixed or {}).get(g),
                )
            )
    return Manifest("fake", "/x", "folder", samples, ["background", "fg"], 1, "binary", volumes)


def _check_partition(m: Manifest, sp: Splits) -> None:
    all_idx = sp.train + sp.val + sp.test
    assert sorted(all_idx) == list(range(len(m.samples)))
    for part in (sp.train, sp.val, sp.test):
        assert part == sorted(part)
    assert_no_leakage(m, sp)


def test_deterministic_and_seed_dependent():
    m = _manifest([(f"g{i}", 1) for i in range(50)])
    a, b = make_splits(m, seed=3), make_splits(m, seed=3)
    assert a == b and a.to_dict() == b.to_dict()
    assert make_splits(m, seed=4) != a
    _check_partition(m, a)
    assert a.sizes() == {"train": 35, "val": 5, "test": 10}
    assert Splits.from_dict(a.to_dict()) == a


def test_volumes_and_groups_stay_together():
    m = _manifest([(f"vol{i}", 3 + i % 4) for i in range(12)], volumes=True)
    sp = make_splits(m, val_fraction=0.2, test_fraction=0.2, seed=1)
    _check_partition(m, sp)
    for part in (sp.train, sp.val, sp.test):
        assert part
        for vol in {m.samples[i].case_id for i in part}:  # every slice of a volume is in this split
            slices = [m.samples[i].slice_index for i in part if m.samples[i].case_id == vol]
            assert sorted(slices) == list(range(len(slices)))
            assert len(slices) == next(s.num_slices for s in m.samples if s.case_id == vol)
    g = _manifest([("p1", 4), ("p2", 2), ("p3", 3), ("p4", 1), ("p5", 5)])
    sp = make_splits(g, seed=0)
    where = {}
    for name in ("train", "val", "test"):
        for i in sp[name]:
            where.setdefault(g.samples[i].group_id, set()).add(name)
    assert all(len(v) == 1 for v in where.values()) and all(sp[k] for k in ("train", "val", "test"))


def test_fractions_are_of_samples():
    m = _manifest([(f"g{i}", 2) for i in range(100)])
    sp = make_splits(m, val_fraction=0.15, test_fraction=0.25, seed=0)
    assert len(sp.test) == 50 and len(sp.val) == 30 and len(sp.train) == 120


def test_fixed_splits_honoured_rest_by_fraction():
    fixed = {"g0": "test", "g1": "test", "g2": "val"}
    m = _manifest([(f"g{i}", 1) for i in range(20)], fixed=fixed)
    sp = make_splits(m, val_fraction=0.1, test_fraction=0.2, seed=0)
    _check_partition(m, sp)
    assert {0, 1} <= set(sp.test) and 2 in sp.val
    assert len(sp.test) == 4 and len(sp.val) == 2
    fixed_all = {f"g{i}": "train" for i in range(6)} | {"g6": "val", "g7": "test"}
    m2 = _manifest([(f"g{i}", 1) for i in range(8)], fixed=fixed_all)
    assert make_splits(m2, seed=0) == Splits(train=[0, 1, 2, 3, 4, 5], val=[6], test=[7])


def test_fixed_train_val_only_carves_test_from_train(caplog):
    fixed = {f"g{i}": "train" for i in range(9)} | {"g9": "val"}
    m = _manifest([(f"g{i}", 1) for i in range(10)], fixed=fixed)
    with caplog.at_level(logging.WARNING, logger="sikd_core.data.splits"):
        sp = make_splits(m, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert sp.val == [9] and len(sp.test) == 2 and len(sp.train) == 7
    assert "moved 2 group(s)" in caplog.text
    assert make_splits(m, val_fraction=0.1, test_fraction=0.0).test == []


def test_small_datasets():
    three = _manifest([("a", 1), ("b", 5), ("c", 1)])
    sp = make_splits(three, seed=0)
    assert all(len(sp[k]) > 0 for k in ("train", "val", "test"))
    with pytest.raises(DatasetError, match="too small to split: it has 2 group"):
        make_splits(_manifest([("a", 3), ("b", 3)]))
    two = make_splits(_manifest([("a", 3), ("b", 3)]), val_fraction=0.0, test_fraction=0.3)
    assert two.val == [] and two.train and two.test
    with pytest.raises(ValueError, match="val_fraction"):
        make_splits(three, val_fraction=-0.1)
    with pytest.raises(ValueError, match="< 1"):
        make_splits(three, val_fraction=0.5, test_fraction=0.5)


def test_leakage_detected_and_conflicting_fixed_split():
    m = _manifest([("a", 2), ("b", 1), ("c", 1)])
    with pytest.raises(DatasetError, match="leakage") as ei:
        assert_no_leakage(m, Splits(train=[0, 2], val=[1], test=[3]))
    assert "group 'a' is in train, val" in str(ei.value)
    with pytest.raises(DatasetError, match="out of range"):
        assert_no_leakage(m, Splits(train=[0, 1, 9], val=[2], test=[3]))
    bad = _manifest([("a", 2), ("b", 1), ("c", 1)])
    bad.samples[1] = Sample(**{**bad.samples[1].to_dict(), "image": ("/x/a_1.png",), "fixed_split": "test"})
    with pytest.raises(DatasetError, match="different splits"):
        make_splits(bad)

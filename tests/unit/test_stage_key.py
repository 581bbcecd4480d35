"""Stage keys (sikd_core.methods.plan.stage_key): what identifies a finished stage, and the CLI's reuse by key."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from sikd_core.data import load_dataset
from sikd_core.data.fingerprint import manifest_fingerprint
from sikd_core.export.card import card_for_bundle
from sikd_core.methods import plan as plan_mod
from sikd_core.methods.plan import stage_keys, stage_settings
from sikd_core.pipeline import ExperimentRun
from sikd_core.spec import parse_spec

DATA = ["f" * 64]
BASE = dict(train_dataset="a", methods=["baseline", "sikd", "reference", "gin", "gin+sikd"], seeds=[0],
            network_kwargs={"widths": [4, 8]}, image_size=32, epochs=3, alpha=2.0)


def keys(data=DATA, **kw):
    return stage_keys(parse_spec({**BASE, **kw}), data)


def changed(a, b):
    return sorted(st for (st, _), k in a.items() if b.get((st, 0)) != k)


ALL = ["baseline", "gin", "gin+sikd", "reference", "student", "teacher"]
STUDENTS = ["gin+sikd", "student"]


@pytest.mark.parametrize(("change", "expect"), [
    ({"alpha": 0.5}, STUDENTS),  # only the students distil with alpha
    ({"student_head_init": "random"}, STUDENTS),
    ({"teacher_input": "image"}, ["gin+sikd", "student", "teacher"]),
    ({"teacher_skip_connections": True}, ["gin+sikd", "student", "teacher"]),
    ({"teacher_epochs": 5}, ["gin+sikd", "student", "teacher"]),
    ({"epochs": 4, "teacher_epochs": 3}, ["baseline", "gin", "gin+sikd", "reference", "student"]),
    ({"lr": 5e-3}, ["baseline", "gin", "gin+sikd", "student", "teacher"]),  # reference: its own recipe's lr
    ({"loss": "ce"}, ["baseline", "gin", "gin+sikd", "student", "teacher"]),
    ({"batch_size": 4}, ALL), ({"augment": False}, ["baseline", "gin", "gin+sikd", "student", "teacher"]),
    # the reference always trains with its own (nnU-Net-like) augmentation
    ({"augmentation": "nnunet"}, ["baseline", "gin", "gin+sikd", "student", "teacher"]),
    ({"split_seed": 1}, ALL), ({"val_fraction": 0.2}, ALL), ({"test_fraction": 0.3}, ALL),
    ({"image_size": 48}, ALL), ({"mask_mode": "binary"}, ALL),
    ({"network_kwargs": {"widths": [8, 16]}}, ALL),  # the network's arguments
    ({"network": "attention_unet", "network_kwargs": {}}, ALL),
    # what never reaches training: labels, devices, the evaluation, the other methods and seeds, health policy
    ({"name": "other", "device": "cpu", "eval_datasets": ["b"], "save_predictions": False, "feature_maps": 0,
      "on_unhealthy": "stop", "reuse": False, "recipe": "standard"}, []),
    ({"methods": ["baseline", "sikd", "reference", "gin", "gin+sikd", "sdm"], "seeds": [0, 3]}, []),
])
def test_what_a_stage_key_depends_on(change, expect):
    assert changed(keys(), keys(**change)) == expect


def test_the_default_augmentation_leaves_the_keys_of_stages_trained_before_it_unchanged():
    """``augmentation`` came after stages were first keyed: its default must not enter a key (else every stage
    trained before it would be trained again); a spec stored without it reads as the default."""
    from sikd_core.spec import stored_spec

    spec = parse_spec(BASE)
    for planned in spec.plan():
        assert "augmentation" not in stage_settings(spec, planned)
    old = stored_spec({k: v for k, v in spec.to_json_dict().items() if k != "augmentation"})
    assert old.augmentation == "standard" and stage_keys(old, DATA) == stage_keys(spec, DATA)


def test_keys_depend_on_the_seed_the_data_content_and_the_code_version(monkeypatch):
    two = keys(seeds=[0, 1])
    assert all(two[(st, 0)] != two[(st, 1)] for st in ALL)
    assert changed(keys(), keys(data=["e" * 64])) == ALL  # another dataset's content
    assert changed(keys(train_dataset=["a", "b"], data=["f" * 64, "e" * 64]),
                   keys(train_dataset=["a", "b"], data=["e" * 64, "f" * 64])) == ALL  # order of the sources
    assert changed(keys(), keys(train_dataset="999")) == []  # ids and paths are not content
    monkeypatch.setattr(plan_mod, "TRAINING_CODE_VERSION", plan_mod.TRAINING_CODE_VERSION + 1)
    assert changed(keys(), stage_keys(parse_spec(BASE), DATA)) == []  # (sanity: same call, same result)
    before = keys()
    monkeypatch.setattr(plan_mod, "TRAINING_CODE_VERSION", plan_mod.TRAINING_CODE_VERSION + 1)
    assert changed(before, keys()) == ALL
    with pytest.raises(ValueError, match="one fingerprint per training dataset"):
        stage_keys(parse_spec(BASE), [])


def test_settings_of_a_baseline_leave_out_the_teacher_and_the_students():
    spec = parse_spec(BASE)
    by = {p.stage: stage_settings(spec, p) for p in spec.plan()}
    assert "alpha" not in by["baseline"] and "teacher_input" not in by["baseline"]
    assert "alpha" not in by["teacher"] and by["teacher"]["teacher_input"] == "class_mean"
    assert by["student"]["alpha"] == 2.0 and by["student"]["teacher_epochs"] == 3


def test_fingerprint_is_the_content_not_the_name_or_place(phantom_sets, tmp_path):
    src = phantom_sets["vendor_a"]
    copy = shutil.copytree(src, tmp_path / "renamed")
    fp = manifest_fingerprint(load_dataset(src))
    assert manifest_fingerprint(load_dataset(copy)) == fp
    img = sorted(p for p in copy.rglob("*.png") if "mask" not in str(p).lower())[0]
    pixels = np.array(Image.open(img))
    pixels.flat[0] = (int(pixels.flat[0]) + 1) % 256  # one pixel of one image
    Image.fromarray(pixels).save(img)
    assert manifest_fingerprint(load_dataset(copy)) != fp


def test_cli_folders_reuse_stages_by_key(phantom_sets, tmp_path):
    """A second experiment beside the first, differing only in alpha, trains only its student; reuse: false
    retrains; a changed split retrains all."""
    base = dict(name="k", train_dataset=str(phantom_sets["vendor_a"]), network="unet", image_size=32, epochs=1,
                network_kwargs={"widths": [4, 8]}, batch_size=4, device="cpu", feature_maps=0, save_predictions=False,
                methods=["baseline", "sikd"])
    first = ExperimentRun(parse_spec(base), tmp_path / "a", reuse_roots=[tmp_path])
    recs = {st: first.run_stage(st, 0) for st, _ in first.spec.stages()}
    assert not any("reused_from" in r for r in recs.values()) and recs["baseline"]["key"]
    second = ExperimentRun(parse_spec({**base, "alpha": 0.5}), tmp_path / "b", reuse_roots=[tmp_path])
    got = {st: second.run_stage(st, 0) for st, _ in second.spec.stages()}
    assert {st for st, r in got.items() if "reused_from" in r} == {"baseline", "teacher"}
    assert got["baseline"]["reused_from"] == {"folder": str(tmp_path / "a")}
    assert (tmp_path / "b/seed_0/baseline/model.pt").samefile(tmp_path / "a/seed_0/baseline/model.pt")
    assert got["baseline"]["model_path"] == str(tmp_path / "b/seed_0/baseline/model.pt")
    assert got["baseline"]["best_val_dice"] == recs["baseline"]["best_val_dice"]
    card = card_for_bundle(tmp_path / "b/seed_0/baseline/model.pt")  # describes b, says where it was trained
    assert card["spec"]["alpha"] == 0.5 and card["provenance"] == f"trained in {tmp_path / 'a'} (reused)"
    assert card_for_bundle(tmp_path / "b/seed_0/student/model.pt")["provenance"] == "trained in this experiment"
    shutil.rmtree(tmp_path / "a")  # the linked files stay with the second experiment
    assert second.evaluate()["rows"]
    third = ExperimentRun(parse_spec({**base, "alpha": 0.5, "reuse": False}), tmp_path / "c", reuse_roots=[tmp_path])
    assert "reused_from" not in third.run_stage("baseline", 0)
    fourth = ExperimentRun(parse_spec({**base, "split_seed": 3}), tmp_path / "d", reuse_roots=[tmp_path])
    assert "reused_from" not in fourth.run_stage("baseline", 0)


def test_augmentation_can_be_swept_and_each_value_is_its_own_stage():
    from sikd_core.sweep import expand_sweep

    combos = expand_sweep({**BASE, "sweep": {"augmentation": ["standard", "nnunet"]}})
    assert [values for values, _ in combos] == [{"augmentation": "standard"}, {"augmentation": "nnunet"}]
    a, b = (stage_keys(parse_spec({k: v for k, v in spec.items() if k != "sweep"}), DATA) for _, spec in combos)
    assert changed(a, b) == ["baseline", "gin", "gin+sikd", "student", "teacher"]  # the reference: its own

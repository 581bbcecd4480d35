from __future__ import annotations

import json

import pytest

from sikd_core.errors import SpecError
from sikd_core.spec import ExperimentSpec, load_spec, parse_spec


def test_defaults_follow_the_paper_with_the_standard_recipe():
    s = parse_spec({"train_dataset": "a"})
    assert s.network == "unet" and s.alpha == 2.0 and s.teacher_input == "class_mean"
    assert s.methods == ["baseline", "sikd"] and s.teacher_skip_connections is False
    assert s.recipe == "standard" and s.loss == "dice_ce"  # measured: bench/recipe_defaults.py
    assert s.stages() == [("baseline", 0), ("teacher", 0), ("student", 0)]
    assert s.student_head_init == "teacher"
    assert parse_spec({"train_dataset": "a", "student_head_init": "random"}).student_head_init == "random"
    with pytest.raises(SpecError, match="student_head_init"):
        parse_spec({"train_dataset": "a", "student_head_init": "zeros"})


def test_the_paper_recipe_is_the_authors_and_explicit_keys_win():
    assert parse_spec({"train_dataset": "a", "recipe": "paper"}).loss == "ce"
    assert parse_spec({"train_dataset": "a", "recipe": "paper", "loss": "dice_ce"}).loss == "dice_ce"
    assert parse_spec({"train_dataset": "a", "loss": "ce"}).recipe == "standard"
    assert parse_spec({"train_dataset": "a", "loss": None}).loss == "dice_ce"  # null: the recipe's
    with pytest.raises(SpecError, match="recipe"):
        parse_spec({"train_dataset": "a", "recipe": "nnunet"})


def test_stages_per_seed_and_method():
    s = parse_spec({"train_dataset": "a", "seeds": [1, 2], "methods": ["sikd"]})
    assert s.stages() == [("teacher", 1), ("student", 1), ("teacher", 2), ("student", 2)]


def test_image_size_int_or_pair_and_ids_as_strings():
    s = parse_spec({"train_dataset": 3, "eval_datasets": [4, 5], "image_size": 128})
    assert s.image_size == (128, 128) and s.train_dataset == "3" and s.eval_datasets == ["4", "5"]
    assert parse_spec({"train_dataset": "a", "image_size": [96, 128]}).image_size == (96, 128)


@pytest.mark.parametrize(
    "data,err",
    [
        ({"train_dataset": "a", "epohcs": 3}, "epohcs: unknown key; known keys: name, train_dataset"),
        ({}, "train_dataset: required"),
        ({"train_dataset": "a", "network": "resnet"}, "known networks: attention_unet"),
        ({"train_dataset": "a", "methods": ["sikd", "sikd"]}, "duplicates"),
        ({"train_dataset": "a", "methods": []}, "methods"),
        ({"train_dataset": "a", "alpha": -1}, "alpha"),
        ({"train_dataset": "a", "teacher_input": "texture"}, "class_mean"),
        ({"train_dataset": "a", "image_size": 8}, r"\[16, 4096\]"),
        ({"train_dataset": "a", "eval_datasets": ["a"]}, "must not contain the training dataset"),
        ({"train_dataset": "a", "val_fraction": 0.5, "test_fraction": 0.5}, "leave data to train"),
        ({"train_dataset": "a", "device": "gpu"}, "device must be"),
        ({"train_dataset": "a", "network_kwargs": {"widths": "wide"}}, "network_kwargs: network 'unet' cannot be built"),
        ({"train_dataset": "a", "network_kwargs": {"widths": [8]}}, "network_kwargs: .*at least 2"),
        ({"train_dataset": "a", "network_kwargs": {"depth": 4}}, "network_kwargs: .*accepts: widths"),
        ({"train_dataset": "a", "network": "swin_unetr", "network_kwargs": {"feature_size": 20}}, "multiple of 12"),
    ],
)
def test_bad_specs_explained(data, err):
    with pytest.raises(SpecError, match=err):
        parse_spec(data)


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "s.yaml").write_text("name: x\ntrain_dataset: data/a\nseeds: [0, 1, 2]\nalpha: 1.5\n")
    s = load_spec(tmp_path / "s.yaml", epochs=3)
    assert s.seeds == [0, 1, 2] and s.alpha == 1.5 and s.epochs == 3
    (tmp_path / "s.json").write_text(json.dumps(s.to_json_dict()))
    assert load_spec(tmp_path / "s.json") == s
    (tmp_path / "bad.yaml").write_text("train_dataset: [unclosed\n")
    with pytest.raises(SpecError, match="cannot parse"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")


def test_json_roundtrip():
    s = parse_spec({"train_dataset": "a", "network_kwargs": {"widths": [8, 16]}, "image_size": [64, 80]})
    assert ExperimentSpec.model_validate(s.to_json_dict()) == s

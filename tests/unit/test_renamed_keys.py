"""The spec's ``model``/``model_kwargs`` are called ``network``/``network_kwargs`` (sikd_core.spec.RENAMED_KEYS):
the old names are read everywhere (spec files, bundles, reports, output folders), the new ones written, both at once
only with one value, and the rename changes no stage key (stages trained before are still reused)."""

from __future__ import annotations

import json

import pytest
import torch

from sikd_core.errors import SpecError
from sikd_core.methods.plan import stage_keys, stored_stage_plan
from sikd_core.spec import RENAMED_KEYS, load_spec, parse_spec, stored_spec, with_current_names

OLD = {"train_dataset": "a", "model": "attention_unet", "model_kwargs": {"channels": [4, 8]}, "image_size": 32}
NEW = {"train_dataset": "a", "network": "attention_unet", "network_kwargs": {"channels": [4, 8]}, "image_size": 32}


def test_old_names_are_read_and_new_ones_written(tmp_path):
    old, new = parse_spec(OLD), parse_spec(NEW)
    assert old == new and (old.network, old.network_kwargs) == ("attention_unet", {"channels": [4, 8]})
    written = old.to_json_dict()
    assert written["network"] == "attention_unet" and not set(RENAMED_KEYS) & set(written)
    assert parse_spec(written) == old
    (tmp_path / "old.yaml").write_text("train_dataset: a\nmodel: attention_unet\nmodel_kwargs: {channels: [4, 8]}\n"
                                       "image_size: 32\n")
    assert load_spec(tmp_path / "old.yaml") == old
    # an override under either name replaces the file's key under the other
    assert load_spec(tmp_path / "old.yaml", network="unet", network_kwargs={"widths": [4, 8]}).network == "unet"
    (tmp_path / "new.yaml").write_text("train_dataset: a\nnetwork: attention_unet\n")
    assert load_spec(tmp_path / "new.yaml", model="unet").network == "unet"


def test_both_names_need_one_value_and_errors_name_the_key_sent():
    assert parse_spec({**NEW, "model": "attention_unet", "model_kwargs": {"channels": [4, 8]}}) == parse_spec(NEW)
    with pytest.raises(SpecError) as e:
        parse_spec({**NEW, "model": "unet"})
    assert e.value.errors == [{"loc": ["model"], "type": "extra_forbidden", "msg": "the old name of network; both "
                               "are given, with different values (model: 'unet'): give network only"}]
    with pytest.raises(SpecError, match="model: unknown network 'nope'") as e:
        parse_spec({"train_dataset": "a", "model": "nope"})
    assert [err["loc"] for err in e.value.errors] == [["model"]]
    with pytest.raises(SpecError) as e:
        parse_spec({"train_dataset": "a", "network_kwargs": {"depth": 4}})
    assert [err["loc"] for err in e.value.errors] == [["network_kwargs"]]
    row = {"train_dataset": "a", "model": "attention_unet", "methods": ["baseline"], "seeds": [0]}
    assert stored_spec(row).network == "attention_unet"  # a row not validated again (migration 0008 rewrites them)
    assert [p.network for p in stored_stage_plan(row)] == ["attention_unet"]
    with pytest.raises(SpecError, match="model_kwargs: the old name of network_kwargs"):
        with_current_names({**NEW, "model_kwargs": {}})
    assert with_current_names(OLD) == NEW and list(with_current_names(OLD)) != list(OLD)


def test_the_rename_changes_no_stage_key():
    """Keys computed by the code before the rename (commit 59d0ac0) for these specs: a stage trained then has the
    same key now, under either name, so it is reused and not trained again."""
    spec = dict(train_dataset="a", methods=["baseline", "sikd", "reference", "gin+sikd"], seeds=[0],
                network_kwargs={"widths": [4, 8]}, image_size=32, epochs=3)
    before = {
        ("baseline", 0): "500587aca7662a1593eb22fd6bd8820b3c804a6d9700ec05aca19f45207856fd",
        ("gin+sikd", 0): "25db33a0cb20c1d1e7a3f6a92773cca2609adf2ac3f87f1166d7ab34c95e95de",
        ("reference", 0): "517e016edb32c1939f9fbd3d63fda0f58005cf7e93bd2e84e15a2d0b4a01f664",
        ("student", 0): "0f738dfc564503d9253ee5d5611faed123d365d626978d2bceff723ececabf12",
        ("teacher", 0): "aca2b7f1640e32b7f93024e6fa353ed003599bc3d4f940870a551346399ebc68",
    }
    assert stage_keys(parse_spec({**spec, "network": "unet"}), ["f" * 64]) == before
    old = {k: v for k, v in spec.items() if k != "network_kwargs"}
    assert stage_keys(parse_spec({**old, "model": "unet", "model_kwargs": {"widths": [4, 8]}}), ["f" * 64]) == before
    other = dict(train_dataset="a", methods=["baseline"], seeds=[1], network="attention_unet", image_size=32, epochs=3)
    assert stage_keys(parse_spec(other), ["e" * 64]) == {
        ("baseline", 1): "0afa0f13fc86f1a1b7eb9cfe80044c20966a36a3dea4b03a442386765051a86e"}


def test_a_bundle_written_before_the_rename_loads(tmp_path):
    from sikd_core.export.card import build_card, render_card_markdown
    from sikd_core.inference import load_bundle, save_bundle
    from sikd_core.models import create_model

    net = create_model("unet", 1, 2, widths=[4, 8])
    old = {"format": "sikd-model/1", "model": "unet", "model_kwargs": {"widths": [4, 8]}, "in_channels": 1,
           "num_classes": 2, "image_size": [32, 32], "class_names": ["background", "fg"], "method": "baseline",
           "seed": 0, "spec": {"name": "old", "train_dataset": "a", "model": "unet", "model_kwargs": {"widths": [4, 8]}},
           "state_dict": net.state_dict()}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_bundle(tmp_path / "old.pt")
    assert (loaded.info["network"], loaded.info["network_kwargs"]) == ("unet", {"widths": [4, 8]})
    assert loaded.info["spec"] == {"name": "old", "train_dataset": "a", "network": "unet",
                                   "network_kwargs": {"widths": [4, 8]}}
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), net.state_dict().values(),
                                                 strict=True))
    card = build_card(loaded.info)
    assert card["model"]["network"] == "unet" and card["spec"]["network"] == "unet" and "model" not in card["spec"]
    assert "- Network: `unet` {\"widths\": [4, 8]}" in render_card_markdown(card)
    save_bundle(tmp_path / "new.pt", loaded.model, **{k: v for k, v in loaded.info.items() if k != "format"})
    raw = torch.load(tmp_path / "new.pt", weights_only=False)
    assert raw["network"] == "unet" and "model" not in raw and raw["spec"]["network"] == "unet"
    with pytest.raises(ValueError, match="network"):
        save_bundle(tmp_path / "bad.pt", net, model="unet", model_kwargs={}, in_channels=1, num_classes=2,
                    image_size=[32, 32])


def test_a_report_and_an_output_folder_from_before_the_rename(tmp_path, phantom_sets):
    from sikd_core.pipeline import ExperimentRun
    from sikd_core.report import render_markdown

    report = {"spec": {"name": "t", "model": "unet", "model_kwargs": {"widths": [4, 8]}, "image_size": [32, 32],
                       "epochs": 1, "batch_size": 2, "lr": 0.001, "loss": "ce", "alpha": 2.0,
                       "teacher_input": "class_mean", "seeds": [0]},
              "train_dataset": "A", "class_names": ["background", "fg"], "units": "px", "rows": [], "summary": [],
              "comparisons": [], "stages": []}
    assert "Network `unet` {'widths': [4, 8]}" in render_markdown(report)
    spec = parse_spec({"train_dataset": str(phantom_sets["vendor_a"]), "network_kwargs": {"widths": [4, 8]},
                       "image_size": 32, "device": "cpu"})
    stored = with_current_names(spec.to_json_dict())
    stored["model"], stored["model_kwargs"] = stored.pop("network"), stored.pop("network_kwargs")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spec.json").write_text(json.dumps(stored))
    ExperimentRun(spec, tmp_path / "run")  # the same experiment: its folder is taken up again
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["network"] == "unet"  # rewritten, new names
    (tmp_path / "run" / "spec.json").write_text(json.dumps(stored))
    other = parse_spec({**spec.to_json_dict(), "network_kwargs": {"widths": [8, 16]}})
    with pytest.raises(SpecError, match="changed: network_kwargs"):
        ExperimentRun(other, tmp_path / "run")

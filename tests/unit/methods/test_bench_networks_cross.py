"""bench/networks_cross.py in its smoke mode: real polyp images, tiny settings; a second run with --reuse links
every stage of the first instead of training it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import SHARED, load_bench

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow(seconds=15)


def _bench():
    return load_bench("networks_cross")


def test_smoke_mode_trains_each_network_and_compares_each_baseline_with_the_reference(tmp_path, capsys):
    data = SHARED.parent
    if not (data / "polyp" / "kvasir-seg" / "images").is_dir():
        pytest.fail(f"shared polyp data missing under {data}; set SIKD_SHARED_DATASETS")
    bench = _bench()
    assert len([n for n in bench.NETWORKS if n != "unet"]) >= 3 and bench.settings(False)["seeds"] == [0, 1]
    # the documented configuration is the published run's (its budget kept when methods_cross's grew)
    published = json.loads((ROOT / "docs" / "benchmarks" / "networks_cross" / "settings.json").read_text())
    assert bench.settings(False) == published["settings"] and bench.settings(False)["epochs"] == bench.EPOCHS
    assert bench.settings(False, epochs=50)["epochs"] == 50
    assert bench.main(["--data", str(data), "--out", str(tmp_path / "bad"), "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    first = tmp_path / "first"
    assert bench.main(["--data", str(data), "--out", str(first), "--smoke", "--device", "cpu"]) == 0
    text = (first / "tables.md").read_text()
    for net in bench.SMOKE_NETWORKS:
        assert f"| {net} | baseline |" in text and f"| {net} | sikd |" in text
        assert f"| {net} | kvasir-seg (intra) |" in text and f"| {net} | cvc-clinicdb (cross) |" in text
    assert "| reference recipe (DynUNet, nnU-Net-like) | reference |" in text
    assert "baseline − reference" in text and "Training health of every model" in text
    out = capsys.readouterr().out
    assert "SMOKE" in out and "trained in" in out
    # another folder reusing the first: every stage is linked by its key, none trained
    second = tmp_path / "second"
    assert bench.main(["--data", str(data), "--out", str(second), "--smoke", "--device", "cpu",
                       "--reuse", str(first)]) == 0
    out = capsys.readouterr().out
    assert "reused from" in out and "trained in" not in out and not re.search(r"epoch +\d+/\d+ loss", out)
    assert (second / "tables.md").read_text().split("Training health")[0] == text.split("Training health")[0]

"""The example specs in examples/ stay valid and in step with the benchmark they document."""

from __future__ import annotations

from pathlib import Path

import pytest

from sikd_core.spec import load_spec
from tests.conftest import load_bench

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _bench():
    return load_bench("polyp_cross")


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"polyp_kvasir_to_cvc.yaml", "polyp_paper_gpu.yaml",
                                          "ablation_teacher_input.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_names_the_shared_polyp_data(path):
    spec = load_spec(path)
    assert spec.train_dataset.startswith("../shared/datasets/")
    assert all(d.startswith("../shared/datasets/") for d in spec.eval_datasets)
    assert spec.train_dataset not in spec.eval_datasets  # cross datasets are never the training set


@pytest.mark.parametrize("teacher_input", ["image", "label_map"])
def test_ablation_overrides_documented_in_the_example_parse(teacher_input):
    spec = load_spec(ROOT / "examples" / "ablation_teacher_input.yaml", teacher_input=teacher_input,
                     methods=["sikd"])
    assert spec.teacher_input == teacher_input and spec.methods == ["sikd"]


def test_cpu_example_is_the_benchmark_configuration():
    bench = _bench()
    args = bench.build_parser().parse_args([])
    example = load_spec(ROOT / "examples" / "polyp_kvasir_to_cvc.yaml")
    built = bench.build_spec(args, Path(example.train_dataset), Path(example.eval_datasets[0]))
    skip = {"name", "train_dataset", "eval_datasets"}
    assert example.model_dump(exclude=skip) == built.model_dump(exclude=skip)

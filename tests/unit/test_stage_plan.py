"""The stage plan: derived once (sikd_core.methods.plan), read by everyone; a module that re-derives it fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sikd_core.methods.plan import is_distilled_method, is_student_stage, method_of_stage, stage_plan
from sikd_core.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def test_one_teacher_per_seed_serves_every_distilled_method():
    spec = parse_spec({"train_dataset": "a", "seeds": [0, 1], "epochs": 5, "teacher_epochs": 7,
                       "methods": ["baseline", "sikd", "gin", "gin+sikd", "maxstyle+sikd", "reference"]})
    plan = stage_plan(spec)
    assert [(p.stage, p.seed, p.role) for p in plan if p.seed == 0] == [
        ("baseline", 0, "plain"), ("gin", 0, "plain"), ("reference", 0, "plain"), ("teacher", 0, "teacher"),
        ("student", 0, "student"), ("gin+sikd", 0, "student"), ("maxstyle+sikd", 0, "student")]
    assert [p.stage for p in plan].count("teacher") == 2  # one per seed, not one per distilled method
    # the epochs the plan trains: 5 per method and seed, 7 per teacher (88 where one teacher per method gave 96)
    assert sum(p.epochs for p in plan) == 2 * (6 * 5 + 7) == 74
    by = {(p.stage, p.seed): p for p in plan}
    assert by[("student", 1)].method == "sikd" and by[("student", 1)].base == "baseline"
    assert by[("gin+sikd", 0)].teacher == "teacher" and by[("gin+sikd", 0)].base == "gin"
    assert by[("teacher", 0)].method is None and by[("reference", 0)].network == "dynunet"
    assert spec.stages() == [(p.stage, p.seed) for p in plan] and spec.needs_teacher


def test_name_rules():
    assert [method_of_stage(s) for s in ("student", "teacher", "evaluation", "gin+sikd", "reference")] == [
        "sikd", None, None, "gin+sikd", "reference"]
    assert [is_student_stage(s) for s in ("student", "sdm+sikd", "sdm", "teacher")] == [True, True, False, False]
    assert is_distilled_method("sikd") and is_distilled_method("maxstyle+sikd") and not is_distilled_method("reference")


def _derivations(path: Path) -> list[str]:
    """Calls that work out a stage's role from its name (``x.endswith("+sikd")``, SQL ``like("%+sikd")``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("endswith", "like", "rstrip", "removesuffix")
                and any(isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.endswith("+sikd")
                        for a in node.args)):
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def test_no_module_re_derives_the_stage_plan():
    """Which stages distil, and from which teacher, is sikd_core.methods' answer (plan.py and the registry's
    parser); the service's SQL, the report, the dashboard (ui/: the API's plan) and the card read it instead of
    matching names."""
    allowed = {ROOT / "sikd_core" / "methods" / "plan.py", ROOT / "sikd_core" / "methods" / "registry.py"}
    found = [d for pkg in ("sikd_core", "sikd_service", "api", "worker", "ui") for p in sorted((ROOT / pkg).rglob("*.py"))
             if p not in allowed for d in _derivations(p)]
    assert not found, "re-derived outside sikd_core.methods: " + ", ".join(found)


@pytest.mark.parametrize("code", ['ok = stage.endswith("+sikd")', 'q = kind.like("%+sikd")'])
def test_the_rule_catches_a_planted_derivation(tmp_path, code):
    planted = ROOT / "sikd_service" / "_planted_tmp.py"
    try:
        planted.write_text(code + "\n", encoding="utf-8")
        assert _derivations(planted)
    finally:
        planted.unlink(missing_ok=True)

"""The README tells the truth about the code: its commands, endpoints, settings and spec keys exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sikd_core.cli import build_parser
from sikd_core.spec import ExperimentSpec

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BASH = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))


def test_the_two_commands():
    assert "./start.sh" in BASH and "bash .ci/run" in BASH
    assert os.access(ROOT / "start.sh", os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci  # .ci/run is the README's test command: install, services, pytest
    assert "exec sikd serve" in (ROOT / "start.sh").read_text()


def _route_patterns() -> list[tuple[set[str], re.Pattern[str]]]:
    from api.main import create_app

    out = []
    for path, ops in create_app().openapi()["paths"].items():
        rx = re.escape(path)
        rx = re.sub(r"\\\{[a-z_]+:path\\\}", ".+", rx)
        rx = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", rx)
        out.append(({m.upper() for m in ops}, re.compile(rx + "$")))
    return out


def _readme_requests() -> list[tuple[str, str]]:
    calls = []
    for line in BASH.splitlines():
        if "curl" not in line or "$API/" not in line:
            continue
        m = re.search(r"\$API(/[^\s\"']*)", line.replace('"$API', "$API"))
        path = m.group(1).split("?")[0]
        if "-X DELETE" in line:
            method = "DELETE"
        elif "-X PATCH" in line:
            method = "PATCH"
        elif "-X POST" in line or " -F " in line or " -d " in line:
            method = "POST"
        else:
            method = "GET"
        calls.append((method, path))
    return calls


def test_every_endpoint_in_the_walkthrough_exists():
    pytest.importorskip("fastapi")
    calls = _readme_requests()
    assert len(calls) >= 15  # upload, create, poll, results, report, models, predict, cancel, delete, ...
    routes = _route_patterns()
    missing = [f"{m} {p}" for m, p in calls if not any(m in ms and rx.match(p) for ms, rx in routes)]
    assert not missing, f"the README names endpoints the API does not have: {missing}"


def test_every_setting_in_the_readme_exists():
    pytest.importorskip("pydantic_settings")
    from sikd_service.config import Settings

    fields = {f"SIKD_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"`(SIKD_[A-Z_]+)`", README))
    client_side = {"SIKD_API_URL", "SIKD_API_TOKEN"}  # the dashboard's (ui/client.py)
    test_side = {n for n in named if n.startswith("SIKD_TEST_")} | {"SIKD_SHARED_DATASETS", "SIKD_FUZZ_EXAMPLES"}
    assert named - fields - client_side - test_side == set()
    code = "".join(p.read_text() for p in [*(ROOT / "ui").glob("*.py"), *(ROOT / "tests").rglob("*.py")])
    assert all(n in code for n in client_side | test_side)


def test_spec_keys_listed_are_the_spec():
    section = README.split("Experiment specs have the same keys")[1].split("Unknown keys")[0]
    listed = set(re.findall(r"`([a-z_]+)`", section))
    fields = set(ExperimentSpec.model_fields)
    assert fields <= listed, f"README misses spec keys {fields - listed}"


def test_cli_verbs_exist():
    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse has no public accessor
    used = set(re.findall(r"^sikd ([a-z]+)", BASH, flags=re.M)) | set(re.findall(r"\| sikd ([a-z]+)", BASH))
    assert used and used <= verbs, used - verbs

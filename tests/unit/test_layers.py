"""The floors of the house are one-way: a package imports only packages on a lower floor (or its own).

    0  sikd_core      the pure library: no service code
    1  sikd_service   settings, tables, queries, storage, the job queue, the service operations
    2  api, worker    HTTP and Celery processes; neither imports the other
    -  ui             an HTTP client of the API: imports none of the others

Files are parsed with ``ast`` (nothing is imported), so imports inside functions count too. The same
files stay under ~500 lines unless their docstring says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOOR = {"sikd_core": 0, "sikd_service": 1, "api": 2, "worker": 2}
PACKAGES = [*FLOOR, "ui"]


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every absolute import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violation(src: str, dst: str) -> str | None:
    """Why ``src`` (a top-level package) may not import ``dst``, or None when it may."""
    if dst not in PACKAGES or dst == src:
        return None
    if src == "ui":
        return "the dashboard talks to the API over HTTP only"
    if dst == "ui":
        return "nothing imports the dashboard"
    if FLOOR[dst] > FLOOR[src]:
        return f"{dst} (floor {FLOOR[dst]}) is above {src} (floor {FLOOR[src]})"
    if FLOOR[dst] == FLOOR[src]:
        return f"{src} and {dst} share a floor and must not know each other"
    return None


def offending_imports(root: Path) -> list[str]:
    problems = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            for line, module in imported_packages(path):
                why = violation(pkg, module.split(".")[0])
                if why:
                    problems.append(f"{path.relative_to(root)}:{line} imports {module}: {why}")
    return problems


def test_no_import_runs_up_or_across_the_floors() -> None:
    problems = offending_imports(ROOT)
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


@pytest.mark.parametrize(("src", "dst", "allowed"), [
    ("sikd_core", "sikd_service", False), ("sikd_core", "api", False), ("sikd_service", "api", False),
    ("sikd_service", "worker", False), ("api", "worker", False), ("worker", "api", False),
    ("ui", "sikd_core", False), ("ui", "api", False), ("api", "ui", False),
    ("api", "sikd_service", True), ("worker", "sikd_service", True), ("sikd_service", "sikd_core", True),
    ("api", "sikd_core", True), ("sikd_core", "torch", True), ("ui", "ui", True),
])
def test_the_rule_table(src: str, dst: str, allowed: bool) -> None:
    assert (violation(src, dst) is None) is allowed


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """A lazy import (the kind the old ``sikd serve`` used) is caught like a top-level one."""
    (tmp_path / "sikd_core").mkdir()
    (tmp_path / "sikd_core" / "cli.py").write_text("def serve():\n    from api.serve import serve\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "x.py").write_text("import worker.dispatch\n")
    assert offending_imports(tmp_path) == [
        "sikd_core/cli.py:2 imports api.serve: api (floor 2) is above sikd_core (floor 0)",
        "api/x.py:1 imports worker.dispatch: api and worker share a floor and must not know each other",
    ]


MAX_LINES = 500
LENGTH_CHECKED = ("sikd_core", "sikd_service", "api", "worker", "ui")


def long_modules(root: Path) -> list[str]:
    """Modules of the checked packages past :data:`MAX_LINES` whose docstring does not say why."""
    long = []
    for pkg in LENGTH_CHECKED:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            n = text.count("\n")
            doc = ast.get_docstring(ast.parse(text)) or ""
            if n > MAX_LINES and "longer than 500 lines because" not in doc:
                long.append(f"{path.relative_to(root)}: {n} lines")
    return long


def test_modules_stay_short_or_say_why() -> None:
    """A module past ~500 lines is cut along its seam, or its docstring states why it is not
    ("longer than 500 lines because ..."). The dashboard (ui/, its pages included) too."""
    long = long_modules(ROOT)
    assert not long, "modules to cut along their seams:\n" + "\n".join(long)


def test_the_size_rule_sees_the_dashboard(tmp_path: Path) -> None:
    """A planted 600-line page fails the rule; the same page saying why passes."""
    (tmp_path / "ui" / "app_pages").mkdir(parents=True)
    page = tmp_path / "ui" / "app_pages" / "big.py"
    page.write_text('"""A page."""\n' + "x = 1\n" * 600)
    assert long_modules(tmp_path) == ["ui/app_pages/big.py: 601 lines"]
    page.write_text('"""A page, longer than 500 lines because it is a test."""\n' + "x = 1\n" * 600)
    assert long_modules(tmp_path) == []

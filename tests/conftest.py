"""Shared fixtures: small SYNTHETIC phantom datasets and a few real polyp pairs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Threads per test process: the cores shared out among pytest-xdist's workers (`.ci/run` runs 1.5 per core),
# so parallel workers do not oversubscribe the CPU; set before torch is imported (the services the tests
# start inherit it). The xdist controller imports this file before it starts its workers, which inherit its
# environment: what the user set is remembered in _SIKD_TEST_OMP_USER, so a worker recomputes its share
# instead of keeping the controller's whole-machine value. Oversubscribed OpenMP threads spin at every
# barrier: two workers with two threads each on two cores made a 1.4 s trainer test take 35 s (2026-12-01).
_USER_THREADS = os.environ.setdefault("_SIKD_TEST_OMP_USER", os.environ.get("OMP_NUM_THREADS", ""))
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
os.environ["OMP_NUM_THREADS"] = _USER_THREADS or str(max(1, min(2, (os.cpu_count() or 2) // _WORKERS)))


def _find_polyp() -> Path:
    """The read-only polyp test data (../shared/datasets/polyp beside the project checkout).

    Looked up in order: $SIKD_SHARED_DATASETS, beside this checkout, beside the repository this one was
    cloned from (CI and reviewers test a fresh clone in a temporary folder), /work/shared/datasets.
    """
    repo = Path(__file__).resolve().parents[1]
    candidates = []
    if os.environ.get("SIKD_SHARED_DATASETS"):
        candidates.append(Path(os.environ["SIKD_SHARED_DATASETS"]))
    candidates.append(repo.parent / "shared" / "datasets")
    try:
        origin = subprocess.run(["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "datasets")
    candidates.append(Path("/work/shared/datasets"))
    for c in candidates:
        if (c / "polyp").is_dir():
            return c / "polyp"
    return candidates[0] / "polyp"


SHARED = _find_polyp()


def load_bench(name: str):
    """The benchmark script ``bench/<name>.py`` as a module (bench/ on the path for its sibling imports)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def polyp_names(source: str, n: int) -> list[str]:
    """The first ``n`` file names of a polyp source, failing with a clear message if the data is missing."""
    folder = SHARED / source / "images"
    if not folder.is_dir():
        pytest.fail(f"shared polyp data missing at {folder}; set SIKD_SHARED_DATASETS to the folder holding polyp/")
    return sorted(os.listdir(folder))[:n]


@pytest.fixture(scope="session")
def phantom_sets(tmp_path_factory) -> dict[str, Path]:
    """SYNTHETIC phantoms: a training domain and two unseen domains (64 px, small)."""
    from sikd_core.data import generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    return {
        "vendor_a": generate_phantoms(root / "vendor_a", domain="vendor_a", n=20, seed=1, size=64),
        "vendor_b": generate_phantoms(root / "vendor_b", domain="vendor_b", n=6, seed=2, size=64),
        "vendor_c": generate_phantoms(root / "vendor_c", domain="vendor_c", n=6, seed=3, size=64),
    }


def copy_polyp_pairs(dest: Path, source: str, names: list[str]) -> Path:
    """Copy a few real pairs of ../shared/datasets/polyp/<source> into a folder dataset."""
    src = SHARED / source
    if not src.is_dir():
        pytest.fail(f"shared polyp data missing at {src}")
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(src / sub / n, dest / sub / n)
    return dest


# ------------------------------------------------------------------------------------------- markers
_DIR_MARKS = {"integration": ("integration", "postgres", "redis", "slow"), "e2e": ("e2e", "browser", "slow")}
_FIXTURE_MARKS = {"pg_url": "postgres", "redis_namespace": "redis"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the xdist_group marks set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what a test needs beyond the library, so ``-m "not postgres and not redis and not browser"``
    runs the fast library subset alone: by folder (integration: Postgres + Redis + workers; e2e: a
    browser), by fixture (``pg_url``, ``redis_namespace``) and by the ``database_url`` backend parameter."""
    tests_dir = Path(__file__).resolve().parent
    xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        try:
            top = Path(str(item.fspath)).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            top = ""
        names = set(_DIR_MARKS.get(top, ()))
        fixtures = set(getattr(item, "fixturenames", ()))
        names.update(mark for fixture, mark in _FIXTURE_MARKS.items() if fixture in fixtures)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgres":
            names.add("postgres")
        for name in sorted(names):
            if name not in {m.name for m in item.iter_markers()}:
                item.add_marker(getattr(pytest.mark, name))
        if xdist:
            item.add_marker(pytest.mark.xdist_group(_xdist_group(item, top)))
    if xdist and getattr(config.option, "loadgroup", False):  # set in the workers, which collect
        items[:] = _longest_groups_first(items)


def _longest_groups_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The order in which pytest-xdist hands out the groups (with ``--no-loadscope-reorder``, as ``.ci/run``
    runs): longest first, so no worker idles at the end while another runs a long group it got last
    (xdist's own order, by number of tests, put the one-test minute-long modules last). Three tiers:
    tests/ui (its stacks and trainings, ~90 s), then the groups holding a ``slow`` test, longest first by
    the marker's ``seconds`` (the module's rough total on a quiet 2-core machine; 10 when not given), then
    the rest by number of tests; a group's tests keep their order."""
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(_group_of(item), []).append(item)

    def tier(name: str, members: list[pytest.Item]) -> tuple[int, float]:
        if name in _SHARED_SESSION_DIRS:
            return (0, 0)
        slow = [mark for m in members if (mark := m.get_closest_marker("slow"))]
        if slow:
            return (1, -max(float(mark.kwargs.get("seconds", 10)) for mark in slow))
        return (2, -len(members))

    ordered = sorted(groups.items(), key=lambda kv: tier(*kv))  # stable: collection order within a tier
    return [item for _, members in ordered for item in members]


def _group_of(item: pytest.Item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0]) if mark and mark.args else item.nodeid


def _xdist_group(item: pytest.Item, top: str) -> str:
    """Which pytest-xdist worker runs a test together with others (``--dist loadgroup``): a whole folder where
    its session fixtures start services and train (ui: the API stacks and a trained experiment), otherwise
    the test's module, so module-scoped fixtures (a trained experiment, exported models) are built once."""
    if top in _SHARED_SESSION_DIRS:
        return top
    return str(item.fspath)


_SHARED_SESSION_DIRS = {"ui"}

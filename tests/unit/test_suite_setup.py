"""The test suite's own set-up (tests/conftest.py): what makes `.ci/run` fast must actually be in effect.

Both were silently lost once: the workers inherited the xdist controller's two torch threads each (a 1.4 s
trainer test took 35 s on the oversubscribed 2-core box), and the xdist_group marks never reached the
scheduler (pytest 9.2 builds a test's id from ``Node._id``, pytest-xdist 3.8 appends the group to
``Node._nodeid``), so every test was scheduled alone and each worker built the shared stacks. pyproject.toml
pins pytest below 9.2 and the marks are set before xdist's own hook; these tests fail when either goes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_torch_gets_this_processes_share_of_the_cores() -> None:
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    user = os.environ.get("_SIKD_TEST_OMP_USER")
    expected = int(user) if user else max(1, min(2, (os.cpu_count() or 2) // workers))
    assert os.environ["OMP_NUM_THREADS"] == str(expected)
    if not user:  # a user's own OMP_NUM_THREADS may exceed what torch takes
        assert torch.get_num_threads() == expected


def test_a_module_is_one_xdist_group(request: pytest.FixtureRequest) -> None:
    """Under `--dist loadgroup` (as `.ci/run` runs) the scheduler sees the module's group in the test's id."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under pytest-xdist with --dist loadgroup (as .ci/run runs the suite)")
    assert request.node.nodeid.endswith("@" + str(Path(__file__))), request.node.nodeid

"""The supervisor of `sikd serve`: a dead component is restarted with exponential backoff (capped) while the
others keep running, and its status (state, restarts, last exit) is what /health reads."""

from __future__ import annotations

import subprocess
import sys
import time

from sikd_service.supervisor import Supervisor, read_status


def _proc(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_dead_component_restarts_with_backoff_and_others_keep_running(tmp_path):
    sup = Supervisor(tmp_path / "serve_status.json", base=0.1, cap=0.4, stable_after=3600)
    starts: list[float] = []

    waits: list[float] = []  # the wait before the next restart, as each start leaves it

    def crashing() -> subprocess.Popen:
        starts.append(time.monotonic())
        waits.append(sup.delay("worker"))
        return _proc("import sys; sys.exit(3)")

    steady = sup.add("api", lambda: _proc("import time; time.sleep(60)"))
    sup.add("worker", crashing)
    try:
        deadline = time.monotonic() + 20
        while len(starts) < 6 and time.monotonic() < deadline:
            sup.poll()
            time.sleep(0.01)
        assert len(starts) >= 6
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert waits[:6] == [0.0, 0.1, 0.2, 0.4, 0.4, 0.4]  # the first restart at once, then doubling, capped
        assert gaps[1] >= 0.1 and gaps[2] >= 0.2 and gaps[3] >= 0.4
        assert gaps[4] >= 0.4 and sup.delay("worker") == 0.4  # capped
        assert steady.poll() is None and sup.procs["api"] is steady  # the others were never touched
        status = read_status(tmp_path)
        assert status["api"].state == "up" and status["api"].restarts == 0
        assert status["worker"].restarts >= 4 and status["worker"].last_exit == 3
    finally:
        for p in sup.procs.values():
            p.kill()
            p.wait()
    sup.clear()
    assert read_status(tmp_path) is None


def test_backoff_comes_from_the_settings(tmp_path, monkeypatch):
    import pytest
    from pydantic import ValidationError

    from sikd_service.config import Settings
    from sikd_service.serve import make_supervisor

    default = make_supervisor(Settings(storage_dir=tmp_path))
    assert (default.base, default.cap, default.stable_after) == (1.0, 60.0, 60.0)
    monkeypatch.setenv("SIKD_RESTART_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("SIKD_RESTART_BACKOFF_CAP_SECONDS", "0.1")
    monkeypatch.setenv("SIKD_RESTART_STABLE_SECONDS", "3600")
    sup = make_supervisor(Settings(storage_dir=tmp_path))
    assert sup.status_path == tmp_path / "serve_status.json"
    starts: list[float] = []

    def crashing() -> subprocess.Popen:
        starts.append(time.monotonic())
        return _proc("pass")

    sup.add("worker", crashing)
    deadline = time.monotonic() + 20
    while len(starts) < 5 and time.monotonic() < deadline:
        sup.poll()
        time.sleep(0.005)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[1] >= 0.05 and gaps[2] >= 0.1 and gaps[3] >= 0.1 and gaps[3] < 1.0  # 0 (at once), 0.05, 0.1, 0.1
    assert sup.delay("worker") == 0.1
    sup.procs["worker"].wait()
    monkeypatch.setenv("SIKD_RESTART_BACKOFF_CAP_SECONDS", "0.01")
    with pytest.raises(ValidationError, match="SIKD_RESTART_BACKOFF_CAP_SECONDS .* must be at least"):
        Settings(storage_dir=tmp_path)
    monkeypatch.setenv("SIKD_RESTART_BACKOFF_SECONDS", "0")
    with pytest.raises(ValidationError, match="greater than 0"):
        Settings(storage_dir=tmp_path)

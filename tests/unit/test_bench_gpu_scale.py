"""bench/gpu_scale.py cannot rot: its --smoke mode (CPU, tiny U-Net, SYNTHETIC phantoms, 1 epoch) runs every
code path (timed stages, evaluation, the concurrent phase in two processes) and writes its summaries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow(seconds=12), pytest.mark.timeout(600)]


def test_gpu_scale_smoke(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_scale.py"), "--out", str(tmp_path), "--smoke",
                        "--device", "cpu", "--budget-s", "3000"], capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    seq = s["phases"]["sequential"]
    assert set(seq["experiments"]) == {"phantom_a", "phantom_c"} and seq["experiments_per_gpu_hour"] > 0
    for rec in seq["experiments"].values():
        b = rec["breakdown"]
        parts = [v for k, v in b.items() if k not in ("total", "pure_step_fraction", "data_fraction")]
        assert b["train_step"] > 0 and all(v >= 0 for v in parts)
        assert sum(parts) == pytest.approx(b["total"], rel=0.2)  # the parts account for the wall time
        assert [st["stage"] for st in rec["stages"]] == ["baseline", "teacher", "student"]
        assert all(st["steps"] == 2 for st in rec["stages"])
    conc = s["phases"]["concurrent"]
    assert conc["processes"] == 2 and not conc["failed"] and set(conc["experiments"]) == {"phantom_a", "phantom_c"}
    md = (tmp_path / "summary.md").read_text()
    assert "| train_step |" in md and "## Experiments per GPU-hour" in md and "concurrent x2" in md

"""The API process's peak memory under decompression bombs stays under 1 GB (it went past 10 GB): a 12000 x
12000 PNG (140 kB) in a dataset zip and 16 times in one predict request, a gzipped 1024 x 1024 x 256 NIfTI
(0.3 MB) in a dataset zip. Measured in a child API process (``ru_maxrss``) by ``bench/hostile_memory.py``."""

from __future__ import annotations

import pytest

from bench.hostile_memory import run

pytestmark = [pytest.mark.slow(seconds=4), pytest.mark.timeout(300)]

BOUND_MB = 1024


def test_bombs_are_refused_and_the_api_stays_under_1_gb(tmp_path):
    result = run(tmp_path)
    assert result["png_bomb_bytes"] < 200_000 and result["nifti_bomb_bytes"] < 600_000  # small on disk
    statuses = result["statuses"]
    for case in ("png_bomb.zip", "nifti_bomb.zip", "predict_16_bombs"):
        code, text = statuses[case]
        assert code == 422, (case, text)
        assert "too large to decode" in text, (case, text)
    assert result["peak_mb"] < BOUND_MB, result
    # refusing the bombs costs (next to) nothing on top of the API's own footprint
    assert result["peak_mb"] - result["baseline_mb"] < 100, result

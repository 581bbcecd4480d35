"""The API process's peak memory under decompression bombs stays under 1 GB (it went past 10 GB): a 12000 x
12000 PNG (140 kB) in a dataset zip and 16 times in one predict request, a gzipped 1024 x 1024 x 256 NIfTI
(0.3 MB) in a dataset zip. Then 16 PNGs of 4096 x 4096 (16 kB each, each within the per-image limit) in one
predict request (it took 225 s and 2.9 GB): refused at once by the per-request pixel budget; one of them
alone is segmented under 1 GB. Measured in a child API process (``VmHWM``) by ``bench/hostile_memory.py``."""

from __future__ import annotations

import pytest

from bench.hostile_memory import run

pytestmark = [pytest.mark.slow(seconds=12), pytest.mark.timeout(300)]

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
    code, text = statuses["predict_16_4096"]
    budget = result["max_predict_pixels"]
    assert code == 413, text
    assert f"{16 * 4096 * 4096} pixels" in text and f"budget of {budget} pixels" in text, text
    assert result["predict_16_4096_seconds"] < 10, result  # from the headers: nothing decoded
    assert result["predict_16_4096_peak_mb"] - result["baseline_mb"] < 100, result
    assert statuses["predict_1_4096"][0] == 200, statuses["predict_1_4096"]
    assert result["predict_1_4096_peak_mb"] < BOUND_MB, result


def test_bodies_without_a_token_or_over_the_limit_are_refused_at_once(tmp_path):
    """A live API (uvicorn) under 500 MB bodies streamed like ``curl -T -``: no token (Content-Length,
    chunked, a wrong token, the upload route) is 401, a token with a body over the route's limit 413, each at
    once; the API's peak memory grows by a few MB at most (it grew by 1 GB when the body was read first), and
    another client polling meanwhile sees no stall (it stalled 4-10 s)."""
    from bench.hostile_memory import run_bodies

    result = run_bodies(tmp_path, total_mb=500, rounds=3)
    cases = result["cases"]
    for name in ("no_token_length", "no_token_chunked", "bad_token_chunked", "no_token_upload"):
        assert cases[name]["status"] == 401, (name, cases[name])
    for name in ("token_length", "token_chunked", "token_60mb_json"):
        assert cases[name]["status"] == 413, (name, cases[name])
    for name, case in cases.items():
        assert case["seconds"] < 3 and case["sent_mb"] < 32, (name, case)  # a few MB in the socket buffers
    assert result["growth_mb"] < 32, result
    assert result["other_client"]["max_ms"] < 2000, result

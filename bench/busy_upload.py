"""Do other requests slow down while the API refuses a hostile upload? ``GET /experiments`` latency from one
client against a live ``sikd serve --no-ui --no-worker`` (SQLite) on loopback, side by side: with no upload,
and while a 10 MB zip of 100 001 entries (over the 100 000-entry limit) is being uploaded and refused, over and
over by a second client. Prints p50/p99 of both and their ratios, and how long each refusal took.

    python bench/busy_upload.py --seconds 30
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import _pct, live_service  # noqa: E402


def hostile_zip(entries: int = 100_001, size: int = 10 * 1024**2) -> bytes:
    """``entries`` small stored files adding up to about ``size`` bytes."""
    buf = io.BytesIO()
    body = b"x" * max(0, size // entries - 90)  # 90: local and central headers of a 7-character name
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(entries):
            zf.writestr(f"d/{i:05x}", body)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30, help="length of each phase")
    args = ap.parse_args()
    data = hostile_zip()
    with live_service(["--no-ui", "--no-worker"], {"OMP_NUM_THREADS": "1", "SIKD_DEMO_DATA": "false"},
                      prefix="sikd-upload-") as (base, token, _lines, _pid):
        headers = {"Authorization": f"Bearer {token}"}
        uploading = threading.Event()
        stop = threading.Event()
        refusals: list[tuple[int, float]] = []

        def uploader() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
                while not stop.is_set():
                    uploading.set()
                    t = time.perf_counter()
                    r = c.post("/datasets", files={"file": ("many.zip", data, "application/zip")})
                    refusals.append((r.status_code, time.perf_counter() - t))
                    uploading.clear()

        def measure(during: bool) -> list[float]:
            lat: list[float] = []
            with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
                c.get("/experiments")
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline:
                    t = time.perf_counter()
                    r = c.get("/experiments")
                    dt = time.perf_counter() - t
                    r.raise_for_status()
                    if not during or uploading.is_set():
                        lat.append(dt)
                    time.sleep(0.01)
            return lat

        idle = measure(during=False)
        up = threading.Thread(target=uploader, daemon=True)
        up.start()
        while not uploading.is_set():
            time.sleep(0.01)
        busy = measure(during=True)
        stop.set()
        up.join(timeout=300)
        out = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
               "upload": f"{len(data) / 1024**2:.1f} MB zip, 100 001 entries",
               "refusals": {"n": len(refusals), "statuses": sorted({s for s, _ in refusals}),
                            "seconds_max": round(max((t for _, t in refusals), default=0), 2)},
               "GET /experiments, no upload": {"n": len(idle), "p50_ms": _pct(idle, 0.5), "p99_ms": _pct(idle, 0.99)},
               "GET /experiments, during uploads": {"n": len(busy), "p50_ms": _pct(busy, 0.5),
                                                    "p99_ms": _pct(busy, 0.99)},
               "p50 ratio": round(_pct(busy, 0.5) / _pct(idle, 0.5), 1),
               "p99 ratio": round(_pct(busy, 0.99) / _pct(idle, 0.99), 1)}
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the first plan and estimate cost the API process: its memory (RSS) and the requests' latency.

Starts ``sikd serve --no-ui --no-worker`` (SQLite, a fresh storage root, a free loopback port: bench/api_load.py's
``live_service``), uploads ``--pairs`` Kvasir-SEG pairs of the shared data, waits ``--settle`` seconds (the API's
start-up warm-up), then times
``GET /datasets/{id}/plan`` twice and ``POST /experiments/estimate`` of the planned spec twice, reading the API
process's ``VmRSS`` before and after each (``/proc/<pid>/status``) and whether it has loaded libtorch
(``/proc/<pid>/maps``). ``--with-worker``: the worker runs too; then how long until a plan reads the steps the
worker timed for it. Prints one JSON line.

    python bench/plan_probe.py --pairs 40 [--with-worker]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import _api_pid, live_service  # noqa: E402 - bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIKD_SHARED_DATASETS", "/work/shared/datasets")) / "polyp" / "kvasir-seg"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _zip(pairs: int) -> bytes:
    names = sorted(os.listdir(SHARED / "images"))[:pairs]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            for sub in ("images", "masks"):
                zf.write(SHARED / sub / n, f"kvasir/{sub}/{n}")
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to wait after the upload")
    ap.add_argument("--with-worker", action="store_true",
                    help="run sikd serve's worker too, and wait (5 min at most) for it to time the planned steps")
    args = ap.parse_args()
    out: dict[str, Any] = {"pairs": args.pairs}
    env = {"SIKD_DEMO_DATA": "false", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    serve = ["--no-ui"] if args.with_worker else ["--no-ui", "--no-worker"]
    with live_service(serve, env, "sikd-plan-probe-") as (base, token, _lines, serve_pid):
        pid = _api_pid(serve_pid)
        assert pid is not None, "no API process"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600) as c:
            r = c.post("/datasets", files={"file": ("k.zip", _zip(args.pairs), "application/zip")},
                       data={"name": "kvasir-probe"})
            r.raise_for_status()
            ds = r.json()["id"]
            time.sleep(args.settle)
            out["rss_before_mib"], out["torch_loaded_before"] = _rss_mib(pid), _torch_loaded(pid)
            for i in (1, 2):
                t = time.perf_counter()
                plan = c.get(f"/datasets/{ds}/plan").raise_for_status().json()
                out[f"plan_{i}_s"] = round(time.perf_counter() - t, 2)
                out[f"rss_after_plan_{i}_mib"] = _rss_mib(pid)
            out["plan_device"], out["plan_estimate"] = plan["device"], plan["estimate"]
            spec = {**plan["spec"], "epochs": 2}
            for i in (1, 2):
                t = time.perf_counter()
                est = c.post("/experiments/estimate", json=spec).raise_for_status().json()
                out[f"estimate_{i}_s"] = round(time.perf_counter() - t, 2)
                out[f"rss_after_estimate_{i}_mib"] = _rss_mib(pid)
            out["estimate_bases"] = sorted({s["basis"] for s in est["stages"]})
            out["torch_loaded_after"] = _torch_loaded(pid)
            t0 = time.monotonic()
            while args.with_worker and time.monotonic() - t0 < 300:
                later = c.get(f"/datasets/{ds}/plan").raise_for_status().json()
                if later["estimate"]["seconds"] is not None:
                    out["measured_within_s"] = round(time.monotonic() - t0, 1)
                    out["plan_later"] = {"device": later["device"], "estimate": later["estimate"],
                                         "rss_mib": _rss_mib(pid)}
                    break
                time.sleep(2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the first plan and estimate cost the API process: its memory (RSS) and the requests' latency.

Starts ``sikd serve --no-ui --no-worker`` (SQLite, a fresh storage root, a free loopback port), uploads ``--pairs``
Kvasir-SEG pairs of the shared data, waits ``--settle`` seconds (the API's start-up warm-up), then times
``GET /datasets/{id}/plan`` twice and ``POST /experiments/estimate`` of the planned spec twice, reading the API
process's ``VmRSS`` before and after each (``/proc/<pid>/status``) and whether it has loaded libtorch
(``/proc/<pid>/maps``). Prints one JSON line.

    python bench/plan_probe.py --pairs 40
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIKD_SHARED_DATASETS", "/work/shared/datasets")) / "polyp" / "kvasir-seg"
TOKEN = "plan-probe-admin-token-0123456789"


def _api_pid(serve_pid: int) -> int | None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == serve_pid and b"uvicorn" in Path(f"/proc/{entry}/cmdline").read_bytes():
                return int(entry)
        except OSError:
            continue
    return None


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _request(url: str, *, data: bytes | None = None, ctype: str | None = None, timeout: float = 600) -> Any:
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {TOKEN}",
                                                          **({"Content-Type": ctype} if ctype else {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - our own local server
        return json.loads(r.read())


def _zip(pairs: int) -> bytes:
    names = sorted(os.listdir(SHARED / "images"))[:pairs]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n in names:
            for sub in ("images", "masks"):
                zf.write(SHARED / sub / n, f"kvasir/{sub}/{n}")
    return buf.getvalue()


def _multipart(data: bytes, name: str) -> tuple[bytes, str]:
    b = "sikdprobeboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"k.zip\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to wait after the upload")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = Path(tempfile.mkdtemp(prefix="sikd-plan-probe-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONUNBUFFERED="1", SIKD_DEMO_DATA="false", SIKD_ADMIN_TOKEN=TOKEN,
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen([sys.executable, "-c", "from sikd_core.cli import main; main()", "serve", "--no-ui",
                             "--no-worker", "--storage", str(storage), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"pairs": args.pairs}
    try:
        t0 = time.monotonic()
        while True:
            try:
                _request(f"{base}/health", timeout=2)
                break
            except (OSError, urllib.error.HTTPError):
                if proc.poll() is not None or time.monotonic() - t0 > 180:
                    raise RuntimeError("sikd serve did not start") from None
                time.sleep(0.3)
        pid = _api_pid(proc.pid)
        assert pid is not None, "no API process"
        body, ctype = _multipart(_zip(args.pairs), "kvasir-probe")
        ds = _request(f"{base}/datasets", data=body, ctype=ctype)["id"]
        time.sleep(args.settle)
        out["rss_before_mib"], out["torch_loaded_before"] = _rss_mib(pid), _torch_loaded(pid)
        for i in (1, 2):
            t = time.perf_counter()
            plan = _request(f"{base}/datasets/{ds}/plan")
            out[f"plan_{i}_s"] = round(time.perf_counter() - t, 2)
            out[f"rss_after_plan_{i}_mib"] = _rss_mib(pid)
        out["plan_device"] = plan["device"]
        out["plan_estimate"] = plan["estimate"]
        spec = {**plan["spec"], "epochs": 2}
        for i in (1, 2):
            t = time.perf_counter()
            est = _request(f"{base}/experiments/estimate", data=json.dumps(spec).encode(), ctype="application/json")
            out[f"estimate_{i}_s"] = round(time.perf_counter() - t, 2)
            out[f"rss_after_estimate_{i}_mib"] = _rss_mib(pid)
        out["estimate_bases"] = sorted({s["basis"] for s in est["stages"]})
        out["torch_loaded_after"] = _torch_loaded(pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

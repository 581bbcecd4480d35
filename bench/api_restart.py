"""How long the API is away after its process is killed under ``sikd serve``.

Starts ``sikd serve --no-ui --no-worker`` (SQLite, a fresh storage root, a free loopback port), then ``--kills``
times: SIGKILL the API's process (the uvicorn child), and time until ``GET /health`` answers 200 again: a request
sent right after the kill (retried every 20 ms while it is refused; counted), and the split into the supervisor's
wait before it starts a new process and that process's start-up; ``--pause`` seconds between kills (a kill within ``SIKD_RESTART_STABLE_SECONDS`` of the last
restart counts as a crash loop and waits longer). Prints one JSON line: the seconds of each outage.

    python bench/api_restart.py --kills 3 --pause 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry))
    return out


def _api_pid(serve_pid: int) -> int | None:
    for pid in _children(serve_pid):
        try:
            if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own local server
            return r.status == 200
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--pause", type=float, default=5.0, help="seconds of uptime between a restart and the next kill")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = Path(tempfile.mkdtemp(prefix="sikd-restart-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONUNBUFFERED="1", SIKD_DEMO_DATA="false",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen([sys.executable, "-c", "from sikd_core.cli import main; main()", "serve", "--no-ui",
                             "--no-worker", "--storage", str(storage), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/health"
    outages = []
    try:
        t0 = time.monotonic()
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError("sikd serve did not start")
            time.sleep(0.2)
        first_start = time.monotonic() - t0
        for _ in range(args.kills):
            time.sleep(args.pause)
            pid = _api_pid(proc.pid)
            if pid is None:
                raise RuntimeError("no API process found")
            respawn: dict[str, float] = {}

            def watch(old: int = pid, respawn: dict[str, float] = respawn) -> None:
                """The supervisor's backoff: until the new process exists."""
                start = time.monotonic()
                while time.monotonic() - start < 180:
                    if _api_pid(proc.pid) not in (None, old):
                        respawn["at"] = time.monotonic()
                        return
                    time.sleep(0.01)

            os.kill(pid, signal.SIGKILL)
            t = time.monotonic()
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            # A client's request sent right after the kill: refused while no process holds the port (retried
            # every 20 ms, counted), or held in the listening socket's backlog until the new process answers.
            refused = 0
            while not _healthy(url, timeout=60):
                refused += 1
                if time.monotonic() - t > 180:
                    raise RuntimeError("the API did not come back within 180 s")
                time.sleep(0.02)
            done = time.monotonic()
            watcher.join(timeout=5)
            respawned = respawn.get("at", done)
            outages.append({"total": round(done - t, 2), "respawn": round(respawned - t, 2),
                            "startup": round(done - respawned, 2), "refused_requests": refused})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(json.dumps({"first_start_s": round(first_start, 2), "pause_s": args.pause, "outages_s": outages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

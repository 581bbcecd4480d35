"""Status reads under load: ``GET /experiments/{id}`` and ``GET /experiments`` from 1 and from 50 concurrent
clients against a live ``sikd serve`` (SQLite, embedded broker) on loopback, while its worker trains.

Starts ``sikd serve --no-ui`` on a fresh storage root (demo datasets), queues a long experiment so the
worker is busy, waits until it runs, then measures with httpx async clients (bounded requests and time)
and prints p50/p99 per case and the ratio p99(50 clients) / p50(1 client). Stops the service at the end.

    python bench/api_load.py --requests 2000 --single 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] * 1000


async def _run(base: str, token: str, path: str, clients: int, total: int, budget_s: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    deadline = time.monotonic() + budget_s
    remaining = [total]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=limits) as c:
        async def client() -> None:
            nonlocal errors
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                t = time.perf_counter()
                try:
                    r = await c.get(path)
                    errors += r.status_code != 200
                except httpx.TransportError:  # counted, not fatal: the figures say how many
                    errors += 1
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"n": len(lat), "errors": errors, "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "rps": len(lat) / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per 50-client case")
    ap.add_argument("--single", type=int, default=200, help="requests per single-client case")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--budget", type=float, default=120, help="seconds per case at most")
    args = ap.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="sikd-load-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    sikd = Path(sys.executable).with_name("sikd")
    proc = subprocess.Popen([str(sikd), "serve", "--no-ui", "--storage", str(storage), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        t_end = time.monotonic() + 240
        while not any("Admin token" in ln for ln in lines):
            if proc.poll() is not None or time.monotonic() > t_end:
                raise RuntimeError("sikd serve did not start:\n" + "".join(lines[-30:]))
            time.sleep(0.3)
        token = re.search(r": (\S+)\s*$", next(ln for ln in lines if "Admin token" in ln)).group(1)
        base = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        ids = [d["id"] for d in api.get("/datasets").json()["data"]]
        spec = {"name": "busy worker", "train_dataset": ids[0], "eval_datasets": ids[1:], "image_size": 64,
                "model_kwargs": {"widths": [8, 16, 32]}, "epochs": 500, "batch_size": 8, "seeds": [0]}
        r = api.post("/experiments", json=spec)
        r.raise_for_status()
        eid = r.json()["id"]
        for _ in range(20):  # more experiments in the list (each with its stages)
            api.post("/experiments", json={**spec, "name": "queued"})
        t_end = time.monotonic() + 180
        while api.get(f"/experiments/{eid}").json()["status"] != "running":
            if time.monotonic() > t_end:
                raise RuntimeError("the experiment did not start")
            time.sleep(0.5)
        out = {"machine": f"{os.cpu_count()} CPUs", "worker": "training (experiment running)"}
        for path in (f"/experiments/{eid}", "/experiments"):
            single = asyncio.run(_run(base, token, path, 1, args.single, args.budget))
            many = asyncio.run(_run(base, token, path, args.clients, args.requests, args.budget))
            out[path.replace(str(eid), "{id}")] = {
                "1 client": single, f"{args.clients} clients": many,
                "p99_many / p50_single": round(many["p99_ms"] / single["p50_ms"], 1)}
            assert api.get(f"/experiments/{eid}").json()["status"] == "running"
        out["service_log_errors"] = [ln.rstrip() for ln in lines if "Error" in ln or "stopped unexpectedly" in ln][-10:]
        print(json.dumps(out, indent=1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

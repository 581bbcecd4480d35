"""Status reads under load: ``GET /experiments/{id}`` and ``GET /experiments`` from 1 and from 50 concurrent
clients against a live ``sikd serve`` (SQLite, embedded broker) on loopback, while its worker trains.

Starts ``sikd serve --no-ui`` on a fresh storage root (demo datasets), queues a long experiment so the
worker is busy, waits until it runs, then measures with httpx async clients (bounded requests and time)
and prints p50/p99 per case and the ratio p99(50 clients) / p50(1 client). Each client opens its connection
with one untimed request first. Stops the service at the end.

Closed loop (the cases above): every client sends its next request as soon as the last one answered, so
the figures are the API's throughput and the latency at saturation. ``--open-loop SECONDS`` adds the load
researchers' dashboards make: ``--clients`` dashboards each polling ``GET /experiments/{id}`` every
``--interval`` seconds (random phases), each request sent at its scheduled time whether or not earlier ones
answered, its latency counted from that time (no coordinated omission). ``--idle`` runs the service without
its worker (nothing trains: the quiet machine's throughput).

    python bench/api_load.py --requests 2000 --single 200
    python bench/api_load.py --open-loop 60 --requests 0       # 50 dashboards every 2 s, training running
    python bench/api_load.py --idle --requests 5000 --single 0 # raw throughput, nothing training
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api_pid(root: int) -> int | None:
    """The API process (uvicorn) under ``sikd serve`` (pid ``root``), from /proc (Linux)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if b"uvicorn" in cmd and int(stat[1]) == root:
                return int(entry)
    return None


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] * 1000


@contextlib.contextmanager
def live_service(serve_args: list[str], env_updates: dict[str, str],
                 prefix: str = "sikd-bench-") -> Iterator[tuple[str, str, list[str]]]:
    """A ``sikd serve`` on a fresh storage root and a free loopback port, started with this environment minus
    its SIKD_/database/broker variables plus ``env_updates``. Yields (base URL, admin token, the service's
    output lines, growing, its pid) once it printed the admin token; stops it at the end (SIGTERM, then SIGKILL)."""
    storage = Path(tempfile.mkdtemp(prefix=prefix))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIKD_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONUNBUFFERED="1", **env_updates)
    sikd = Path(sys.executable).with_name("sikd")
    proc = subprocess.Popen([str(sikd), "serve", *serve_args, "--storage", str(storage), "--port", str(port)],
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
        yield f"http://127.0.0.1:{port}", token, lines, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def _run(base: str, token: str, path: str, clients: int, total: int, budget_s: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    deadline = time.monotonic() + budget_s
    remaining = [total]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=limits) as c:
        span = [float("inf"), 0.0]

        async def client() -> None:
            nonlocal errors
            await c.get(path)  # untimed: the connection is opened (and the token resolved) before timing
            # No barrier after it: a connection idle for 5 s would be closed by uvicorn's keep-alive timeout.
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                t = time.perf_counter()
                try:
                    r = await c.get(path)
                    kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
                except httpx.TransportError as e:  # counted, not fatal: the figures say how many and which
                    kind = type(e).__name__
                if kind:
                    errors += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
                lat.append(time.perf_counter() - t)
                span[0], span[1] = min(span[0], t), time.perf_counter()

        await asyncio.gather(*(client() for _ in range(clients)))
        wall = span[1] - span[0]
    return {"n": len(lat), "errors": errors, "error_kinds": kinds, "mean_ms": 1000 * sum(lat) / max(len(lat), 1),
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "rps": len(lat) / wall}


async def _open_loop(base: str, token: str, path: str, dashboards: int, interval: float,
                     seconds: float) -> dict[str, Any]:
    """``dashboards`` clients polling ``path`` every ``interval`` s for ``seconds`` (see the docstring)."""
    import random

    rng = random.Random(0)
    lat: list[float] = []
    kinds: dict[str, int] = {}
    limits = httpx.Limits(max_connections=4 * dashboards, max_keepalive_connections=4 * dashboards)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=limits) as c:
        await asyncio.gather(*(c.get(path) for _ in range(dashboards)))  # untimed: connections opened
        start = time.perf_counter() + 0.5

        async def one(at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                r = await c.get(path)
                kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
            except httpx.TransportError as e:
                kind = type(e).__name__
            if kind:
                kinds[kind] = kinds.get(kind, 0) + 1
            lat.append(time.perf_counter() - at)  # from the scheduled time: a late send counts as latency

        times = [start + phase + k * interval for phase in (rng.uniform(0, interval) for _ in range(dashboards))
                 for k in range(int(seconds / interval))]
        await asyncio.gather(*(one(t) for t in times))
    return {"dashboards": dashboards, "interval_s": interval, "seconds": seconds, "n": len(lat),
            "errors": sum(kinds.values()), "error_kinds": kinds, "offered_rps": round(dashboards / interval, 1),
            "mean_ms": 1000 * sum(lat) / max(len(lat), 1), "p50_ms": _pct(lat, 0.5), "p90_ms": _pct(lat, 0.9),
            "p99_ms": _pct(lat, 0.99), "max_ms": max(lat) * 1000 if lat else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per 50-client case")
    ap.add_argument("--single", type=int, default=200, help="requests per single-client case")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--budget", type=float, default=120, help="seconds per case at most")
    ap.add_argument("--set", action="append", default=[], metavar="SIKD_NAME=VALUE",
                    help="a setting of the service under test (repeatable); others are the defaults")
    ap.add_argument("--log", help="write the service's whole log to this file")
    ap.add_argument("--open-loop", type=float, default=0, metavar="SECONDS",
                    help="also run the dashboards' open-loop load on GET /experiments/{id} for this long")
    ap.add_argument("--interval", type=float, default=2.0, help="open loop: seconds between a dashboard's polls")
    ap.add_argument("--idle", action="store_true", help="no worker: nothing trains (quiet-machine throughput)")
    ap.add_argument("--paths", choices=("one", "list", "both"), default="both",
                    help="closed-loop cases: one (/experiments/{id}), list (/experiments), or both")
    args = ap.parse_args()
    # 21 experiments are stored (1 training, 20 queued): the per-user limit of active ones is raised for that.
    env = {"OMP_NUM_THREADS": "1", "SIKD_MAX_ACTIVE_EXPERIMENTS": "25"}
    for kv in args.set:
        k, sep, v = kv.partition("=")
        if not (sep and k.startswith("SIKD_")):
            ap.error(f"--set takes SIKD_NAME=VALUE; got {kv!r}")
        env[k] = v
    with live_service(["--no-ui"] + (["--no-worker"] if args.idle else []), env, prefix="sikd-load-") as (
            base, token, lines, serve_pid):
        api_pid = _api_pid(serve_pid)

        def measured(run: Any) -> dict[str, Any]:
            """``run``'s figures plus the API process's CPU per request: its capacity on one free core,
            whatever the load generator and the machine's other jobs cost."""
            cpu = _cpu_seconds(api_pid)
            result = asyncio.run(run)
            used = _cpu_seconds(api_pid) - cpu
            result["api_cpu_ms_per_request"] = round(1000 * used / max(result["n"], 1), 3) if api_pid else None
            result["api_rps_per_cpu_second"] = round(result["n"] / used, 1) if api_pid and used > 0 else None
            return result

        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        ids = [d["id"] for d in api.get("/datasets").json()["data"]]
        spec = {"name": "busy worker", "train_dataset": ids[0], "eval_datasets": ids[1:], "image_size": 64,
                "network_kwargs": {"widths": [8, 16, 32]}, "epochs": 500, "batch_size": 8, "seeds": [0]}
        r = api.post("/experiments", json=spec)
        r.raise_for_status()
        eid = r.json()["id"]
        for _ in range(20):  # more experiments in the list (each with its stages)
            api.post("/experiments", json={**spec, "name": "queued"}).raise_for_status()
        want = "queued" if args.idle else "running"
        t_end = time.monotonic() + 180
        while api.get(f"/experiments/{eid}").json()["status"] != want:
            if time.monotonic() > t_end:
                raise RuntimeError("the experiment did not start")
            time.sleep(0.5)
        out: dict[str, Any] = {
            "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start",
            "worker": "none (--idle)" if args.idle else "training (experiment running)", "settings": args.set}
        paths = {"one": [f"/experiments/{eid}"], "list": ["/experiments"],
                 "both": [f"/experiments/{eid}", "/experiments"]}[args.paths]
        for path in paths if args.requests else []:
            single = measured(_run(base, token, path, 1, args.single, args.budget)) if args.single else None
            many = measured(_run(base, token, path, args.clients, args.requests, args.budget))
            out[path.replace(str(eid), "{id}")] = {
                "1 client": single, f"{args.clients} clients": many,
                "p99_many / p50_single": round(many["p99_ms"] / single["p50_ms"], 1) if single else None}
            assert api.get(f"/experiments/{eid}").json()["status"] == want
        if args.open_loop:
            out["open loop /experiments/{id}"] = measured(
                _open_loop(base, token, f"/experiments/{eid}", args.clients, args.interval, args.open_loop))
            assert api.get(f"/experiments/{eid}").json()["status"] == want
        out["load average at the end"] = round(os.getloadavg()[0], 1)
        if args.log:
            Path(args.log).write_text("".join(lines))
        out["service_log_errors"] = [ln.rstrip() for ln in lines if "Error" in ln or "stopped unexpectedly" in ln][-10:]
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long the first ``POST /experiments`` after a start takes, against the next ones.

Starts the API in this process (in-process ASGI client, SQLite, no worker: enqueued stages go to the embedded
broker), uploads two SYNTHETIC phantom datasets, waits ``--wait`` seconds (a user opening the dashboard: the
API's start-up warm-up runs meanwhile) and times three ``POST /experiments`` of one small spec. Prints one
JSON line. Run it in a fresh process each time (the first request's cost is per process).

    python bench/first_post.py --wait 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wait", type=float, default=5.0, help="seconds between the start and the first POST")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    t0 = time.perf_counter()
    from fastapi.testclient import TestClient

    from api.main import create_app
    from sikd_core.data import generate_phantoms
    from sikd_service.config import Settings
    from tests.service_helpers import zip_folder

    imported = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        zips = {d: zip_folder(generate_phantoms(work / d, domain=d, n=n, seed=seed, size=32), top=d)
                for d, n, seed in (("vendor_a", 16, 1), ("vendor_b", 6, 2))}
        token = "bench-admin-token-0123456789"
        auth = {"Authorization": f"Bearer {token}"}
        t1 = time.perf_counter()
        with TestClient(create_app(Settings(storage_dir=work / "storage", admin_token=token, demo_data=False))) as c:
            started = time.perf_counter() - t1
            ids = {d: c.post("/datasets", files={"file": (f"{d}.zip", z)}, data={"name": d}, headers=auth).json()["id"]
                   for d, z in zips.items()}
            time.sleep(args.wait)
            spec = {"train_dataset": ids["vendor_a"], "eval_datasets": [ids["vendor_b"]], "image_size": 32,
                    "epochs": 2, "network_kwargs": {"widths": [8, 16]}, "seeds": [0]}
            times = []
            for i in range(3):
                t = time.perf_counter()
                r = c.post("/experiments", json={**spec, "name": f"first-{i}"}, headers=auth)
                times.append(round((time.perf_counter() - t) * 1000, 1))
                assert r.status_code == 201, r.text
    print(json.dumps({"import_s": round(imported, 2), "start_s": round(started, 2), "wait_s": args.wait,
                      "post_ms": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

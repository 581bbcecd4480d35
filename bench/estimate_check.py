"""The run-time estimate against the real run, for each size choice of the New-experiment form.

Starts the real stack (``sikd serve``: API and one worker, temp storage), uploads a slice of the shared polyp data
(Kvasir-SEG for training, CVC-ClinicDB as the unseen dataset), and for each choice of the form's "Size" (the
dataset's plan, the quick and the paper presets; epochs cut so each runs in minutes on a CPU) asks
``POST /experiments/estimate``, starts the experiment and waits for it. Then the same two again, started together,
so the second one's estimate includes the queue. Prints, per run: the estimate (queue, training, evaluation) next
to what it took (queue wait, training, evaluation, from the stages' times), and the ratio.

    PYTHONPATH=$PWD python bench/estimate_check.py --train 40 --cross 30

The first estimate of a configuration never run has no figure ("not measured yet"): the API sends its steps to the
worker to be timed, and the estimate is asked again until it rests on that timing (the wait is printed); later ones
rest on the stages that ran (measured). The "ahead" run of the pair can exceed its estimate: the workers take
stages first come, first served, so the stages of the experiment started just after it run before its students
and its evaluation; an estimate cannot foresee later submissions. Data: ../shared/datasets/polyp (research use only; see its README).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SIKD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")) / "polyp"


def polyp_zip(source: str, n: int, top: str) -> bytes:
    buf = io.BytesIO()
    names = sorted(os.listdir(DATA / source / "images"))[:n]
    with zipfile.ZipFile(buf, "w") as zf:
        for sub in ("images", "masks"):
            for name in names:
                zf.write(DATA / source / sub / name, f"{top}/{sub}/{name}")
    return buf.getvalue()


def _t(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def took(exp: dict) -> dict[str, float]:
    """Queue wait (created -> first stage start), training (-> last training stage end), evaluation, total."""
    stages = exp["stages"]
    train = [s for s in stages if s["kind"] != "evaluation"]
    [ev] = [s for s in stages if s["kind"] == "evaluation"]
    created, first = _t(exp["created_at"]), min(_t(s["started_at"]) for s in train)
    trained = max(_t(s["finished_at"]) for s in train)
    return {"queue": (first - created).total_seconds(), "training": (trained - first).total_seconds(),
            "evaluation": (_t(ev["finished_at"]) - trained).total_seconds(),
            "total": (_t(exp["finished_at"]) - created).total_seconds()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=40, help="Kvasir-SEG pairs (training dataset)")
    ap.add_argument("--cross", type=int, default=30, help="CVC-ClinicDB pairs (unseen dataset)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of every run (the presets' are cut to this)")
    ap.add_argument("--paper-epochs", type=int, default=1, help="epochs of the paper preset (hours at its own 50)")
    ap.add_argument("--presets", default="plan,quick,paper")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.ui.stack import Stack

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp) / "storage", worker=True, ui=False, log=Path(tmp) / "serve.log")
        try:
            stack.wait_ready(timeout=180)
            api = stack.admin
            api.http.timeout = 120
            kv = api.upload(polyp_zip("kvasir-seg", args.train, "kvasir"), "kvasir")["id"]
            cvc = api.upload(polyp_zip("cvc-clinicdb", args.cross, "cvc"), "cvc")["id"]
            presets = {p["name"]: p["values"] for p in api.get("/options")["presets"]}
            presets["plan"] = {k: v for k, v in api.get(f"/datasets/{kv}/plan", params={"measure": "false"})["spec"]
                               .items() if k in ("network", "network_kwargs", "image_size", "epochs", "batch_size", "lr")}
            base = {"train_dataset": str(kv), "eval_datasets": [str(cvc)], "methods": ["baseline", "sikd"],
                    "seeds": [0], "device": "cpu", "feature_maps": 1}

            def spec_of(name: str, tag: str) -> dict:
                epochs = args.paper_epochs if name == "paper" else args.epochs
                return {**base, **presets[name], "epochs": epochs, "name": f"{name} {tag}"}

            def wait(exp_id: int) -> dict:
                while True:
                    e = api.get(f"/experiments/{exp_id}")
                    if e["status"] in ("succeeded", "failed", "cancelled"):
                        if e["status"] != "succeeded":
                            raise SystemExit(f"experiment {exp_id} {e['status']}: {e.get('error')}")
                        return e
                    time.sleep(1.0)

            def estimate(spec: dict, name: str) -> dict:
                """The estimate, asked again while its steps are being timed on the worker."""
                t = time.monotonic()
                est = api.post("/experiments/estimate", json=spec)
                print(f"estimate of {name}: {time.monotonic() - t:.1f} s to answer", flush=True)
                while est["seconds"] is None and time.monotonic() - t < 900:
                    time.sleep(2.0)
                    est = api.post("/experiments/estimate", json=spec)
                if est["seconds"] is None:
                    raise SystemExit(f"the worker did not time the steps of {name}: {est.get('timing')}")
                print(f"estimate of {name}: rests on measured steps after {time.monotonic() - t:.1f} s", flush=True)
                return est

            runs: list[tuple[str, dict, dict]] = []  # (label, estimate, experiment)
            for name in args.presets.split(","):
                spec = spec_of(name, "alone")
                est = estimate(spec, name)
                exp = api.post("/experiments", json=spec)
                runs.append((f"{name} (alone)", est, wait(exp["id"])))
            # two at once: the second waits for the first (one worker), its estimate includes that queue
            pair = []
            for name in ("quick", "plan"):
                spec = spec_of(name, "queued")
                est = estimate(spec, name)
                pair.append((f"{name} (queued behind)" if pair else f"{name} (ahead)", est,
                             api.post("/experiments", json=spec)["id"]))
            runs += [(label, est, wait(i)) for label, est, i in pair]
        finally:
            stack.stop()
    print(f"{'run':24} {'estimate (queue + train + eval)':>34} {'measured (queue + train + eval)':>34} "
          f"{'ratio':>6}  basis")
    for label, est, exp in runs:
        m = took(exp)
        ratio = est["seconds"] / m["total"]
        rows.append(ratio)
        bases = ", ".join(sorted({s["basis"].split(" (")[0] for s in est["stages"]}))
        print(f"{label:24} {est['seconds']:7.0f} s ({est['queue_seconds']:4.0f} + {est['training_seconds']:5.0f} + "
              f"{est['evaluation_seconds']:4.0f}) {m['total']:7.0f} s ({m['queue']:4.0f} + {m['training']:5.0f} + "
              f"{m['evaluation']:4.0f}) {ratio:6.2f}  {bases}; eval {est['evaluation_basis'].split(' (')[0]}")
    worst = max(max(r, 1 / r) for r in rows)
    print(f"worst factor {worst:.2f} ({'within' if worst <= 2 else 'NOT within'} 2x)")
    return 0 if worst <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

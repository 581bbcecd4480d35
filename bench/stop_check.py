"""The worker's per-step hooks: cost of the cancel check with the throttle off (the old behaviour: a database
read after every training step) and on (``cancel_check_seconds``, default 2 s), side by side.

Both sides run in the same process on the same SQLite database (a fresh file, WAL, migrated by Alembic),
interleaved (off, on, off, on, ...); each repetition times ``steps`` calls of the hooks the trainer runs
after a step (``on_step_end``, whose throttled progress write is kept out of the measurement, then
``should_stop``). For scale, the
time of one real training step of a small U-Net on this machine is printed too.

    python bench/stop_check.py                 # SQLite
    python bench/stop_check.py --database-url postgresql+psycopg://127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from sikd_core.models import create_model
from sikd_core.training import TrainConfig, Trainer
from sikd_service.config import Settings
from sikd_service.db import session_scope, upgrade_database
from sikd_service.tables import Experiment, User
from worker.progress import DbProgressCallback, StageRecorder


def per_step_us(settings: Settings, experiment_id: int, steps: int, check_seconds: float) -> float:
    """Microseconds per training step spent in the worker's hooks."""
    # Progress writes stay throttled out of the way on both sides (there is no claimed stage to write to):
    # only the cancel check differs.
    cfg = settings.model_copy(update={"cancel_check_seconds": check_seconds, "progress_interval_seconds": 1e9})
    rec = StageRecorder(cfg, stage_id=0, token="bench")  # no heartbeat thread: never entered
    cb = DbProgressCallback(rec, experiment_id=experiment_id, attempt=1)
    cb.throttle.ready(force=True)
    trainer = SimpleNamespace(progress=0.5, eta_seconds=1.0, state=SimpleNamespace(epoch=0))
    logs = {"loss": 0.1}
    start = time.perf_counter()
    for _ in range(steps):
        cb.on_step_end(trainer, logs)
        if cb.should_stop(trainer):
            raise RuntimeError("the bench experiment is not cancelled; should_stop said it was")
    return (time.perf_counter() - start) / steps * 1e6


def train_step_ms(reps: int = 5) -> float:
    """One real training step (forward, backward, optimiser) of a small U-Net, 4x1x64x64, on the CPU."""
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 64, 64), torch.randint(0, 2, (4, 64, 64))
    model = create_model("unet", 1, 2, widths=(8, 16, 32))
    trainer = Trainer(model, (x, y), None, TrainConfig(epochs=1, batch_size=4, device="cpu"), num_classes=2)
    trainer._setup()  # as bench/speed.py: optimiser and loss, without running fit()
    trainer.model.train()
    trainer.train_step(x, y)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        trainer.train_step(x, y)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--check-seconds", type=float, default=2.0, help="the throttle of the 'on' side")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(database_url=url, storage_dir=Path(tmp) / "storage")
        upgrade_database(settings)
        with session_scope(settings) as s:
            user = User(name=f"bench-{time.time_ns()}")
            s.add(user)
            s.flush()
            exp = Experiment(owner_id=user.id, name="bench", spec={}, status="running")
            s.add(exp)
            s.flush()
            exp_id = exp.id
        off, on = [], []
        for _ in range(args.reps):
            off.append(per_step_us(settings, exp_id, args.steps, 0.0))
            on.append(per_step_us(settings, exp_id, args.steps, args.check_seconds))
        step = train_step_ms()
        backend = url.split(":", 1)[0]
    print(f"# {platform.platform()}, {platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; {backend}; {args.steps} steps x {args.reps}")
    print(f"{'':34}{'throttle off (before)':>24}{'throttle on (after)':>24}")
    print(f"{'worker hooks per step, median (us)':34}{statistics.median(off):>24.1f}{statistics.median(on):>24.1f}")
    print(f"{'  min .. max (us)':34}{f'{min(off):.1f} .. {max(off):.1f}':>24}{f'{min(on):.1f} .. {max(on):.1f}':>24}")
    print(f"{'share of a small U-Net step':34}{statistics.median(off) / 1e3 / step:>24.1%}"
          f"{statistics.median(on) / 1e3 / step:>24.1%}")
    print(f"before/after: {statistics.median(off) / statistics.median(on):.0f}x less time in the hooks per step; "
          f"one training step (small U-Net, 4x1x64x64, CPU) = {step:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

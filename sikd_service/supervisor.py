"""Keeps the children of ``sikd serve`` alive: a component that dies is restarted with exponential backoff
while the others keep running, and each component's state is written to ``<storage>/serve_status.json``
for ``GET /health`` (state, restarts, last exit code; no paths or command lines).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("sikd.serve.supervisor")

STATUS_FILE = "serve_status.json"


@dataclass
class ComponentStatus:
    """What ``/health`` shows of one supervised component."""

    state: str = "up"  # up | restarting
    restarts: int = 0
    last_exit: int | None = None
    since: str = ""


@dataclass
class _Child:
    start: Callable[[], subprocess.Popen]
    proc: subprocess.Popen
    status: ComponentStatus
    restart_at: float | None = None
    started: float = 0.0


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Supervisor:
    """Restart dead components: the first restart at once (a component killed once, e.g. by the OOM killer, is
    back as soon as it can start), the n-th in a row after ``min(cap, base * 2**(n-1))`` seconds (a crash loop
    backs off); a component that stayed up for ``stable_after`` seconds starts again from the first."""

    def __init__(self, status_path: Path, *, base: float = 1.0, cap: float = 60.0, stable_after: float = 60.0):
        self.status_path = status_path
        self.base, self.cap, self.stable_after = base, cap, stable_after
        self.children: dict[str, _Child] = {}
        self._streak: dict[str, int] = {}

    def add(self, name: str, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        proc = start()
        self.children[name] = _Child(start=start, proc=proc, status=ComponentStatus(since=_now_iso()),
                                     started=time.monotonic())
        self._write()
        return proc

    @property
    def procs(self) -> dict[str, subprocess.Popen]:
        return {name: c.proc for name, c in self.children.items()}

    def delay(self, name: str) -> float:
        streak = self._streak.get(name, 0)
        return 0.0 if streak == 0 else min(self.cap, self.base * 2 ** (streak - 1))

    def poll(self) -> None:
        """Notice dead children and restart those whose backoff has passed; call it every fraction of a second."""
        now = time.monotonic()
        changed = False
        for name, c in self.children.items():
            if c.restart_at is None and c.proc.poll() is not None:
                if now - c.started >= self.stable_after:
                    self._streak[name] = 0
                wait = self.delay(name)
                c.restart_at = now + wait
                c.status.state, c.status.last_exit, c.status.since = "restarting", c.proc.returncode, _now_iso()
                log.warning("%s stopped unexpectedly (exit code %s); restarting it in %.1f s (others keep running)",
                            name, c.proc.returncode, wait)
                changed = True
            elif c.restart_at is not None and now >= c.restart_at:
                self._streak[name] = self._streak.get(name, 0) + 1
                c.proc = c.start()
                c.started, c.restart_at = now, None
                c.status.state, c.status.since = "up", _now_iso()
                c.status.restarts += 1
                log.info("%s restarted (restart %d)", name, c.status.restarts)
                changed = True
        if changed:
            self._write()

    def _write(self) -> None:
        data = {name: asdict(c.status) for name, c in self.children.items()}
        tmp = self.status_path.with_name(self.status_path.name + f".tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.status_path)
        except OSError as e:  # the status is informative; supervision goes on without it
            log.warning("cannot write the component status: %s", e)

    def clear(self) -> None:
        """At shutdown: the components are no longer supervised."""
        self.status_path.unlink(missing_ok=True)


def read_status(storage_dir: Path) -> dict[str, ComponentStatus] | None:
    """The components of a running ``sikd serve`` (``None`` when the API runs on its own)."""
    try:
        data = json.loads((storage_dir / STATUS_FILE).read_text())
        return {name: ComponentStatus(**v) for name, v in data.items()}
    except (OSError, ValueError, TypeError):
        return None

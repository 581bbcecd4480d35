"""``GET /experiments/{id}``'s answer, kept per experiment for a moment.

A researcher's dashboard polls its experiment every 2 s, and a lab's dashboards poll the same few
experiments; the answer changes at most as often as the worker writes progress (``SIKD_PROGRESS_INTERVAL_SECONDS``).
The serialised answer is kept for ``SIKD_STATUS_CACHE_SECONDS`` (1 s), so within that time every poll of the
experiment is answered from memory on the event loop: no query, no thread, no validation or serialisation.
Access is checked on every hit (the owner or an admin, as the query does). Cancelling or deleting the
experiment through this process drops its entry at once; changes written elsewhere (the worker's progress,
another API process) are seen within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from starlette.requests import Request


class Entry(NamedTuple):
    owner_id: int
    body: bytes
    expires: float


class StatusCache:
    """experiment id -> (owner, JSON body, expiry). Bounded, oldest out first."""

    def __init__(self, ttl: float, max_entries: int = 1024):
        self.ttl, self.max_entries = ttl, max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        #: Bumped by every drop: a read that started before one is not kept (it may be stale).
        self.generation = 0

    def get(self, experiment_id: int) -> Entry | None:
        with self._lock:
            hit = self._entries.get(experiment_id)
            if hit is not None and hit.expires <= time.monotonic():
                del self._entries[experiment_id]
                return None
            return hit

    def put(self, experiment_id: int, owner_id: int, body: bytes, generation: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._entries[experiment_id] = Entry(owner_id, body, time.monotonic() + self.ttl)
            self._entries.move_to_end(experiment_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, experiment_id: int) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(experiment_id, None)

    def __len__(self) -> int:
        return len(self._entries)


def status_cache(request: Request) -> StatusCache:
    """The app's cache, made on first use (from the event loop, by the status route)."""
    cache: StatusCache | None = getattr(request.app.state, "status_cache", None)
    if cache is None:
        cache = request.app.state.status_cache = StatusCache(request.app.state.settings.status_cache_seconds)
    return cache


def drop(request: Request, experiment_id: int) -> None:
    """Forget an experiment's answer (it was cancelled or deleted through this process)."""
    cache: StatusCache | None = getattr(request.app.state, "status_cache", None)
    if cache is not None:
        cache.drop(experiment_id)

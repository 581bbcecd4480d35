"""Who is calling: the bearer token resolved to its user, cached briefly per process.

Every request presents a token, and resolving it (a join on the token's SHA-256) was one query and one
thread-pool hop per request. A resolved token is kept for ``SIKD_TOKEN_CACHE_SECONDS`` under its digest
(never in clear); a cache hit needs neither the database nor a thread. Revoking tokens through the API
drops the user's entries at once, so revocation takes effect at once in this process; another API process
(if a deployment runs several) sees it within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from sqlalchemy.orm import Session, make_transient_to_detached

from sikd_service.tables import User


class TokenCache:
    """SHA-256 digest of a token -> (its user, detached, as loaded; expiry). Bounded, oldest out first."""

    def __init__(self, ttl: float, max_entries: int = 4096):
        self.ttl, self.max_entries = ttl, max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[User, float]] = OrderedDict()
        #: Bumped by every revocation: a lookup that started before one is not cached (it may be stale).
        self.generation = 0

    def peek(self, digest: str) -> User | None:
        """The cached user (detached: merge it into a session before use); None on a miss or an expired entry."""
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None:
                return None
            if hit[1] <= time.monotonic():
                del self._entries[digest]
                return None
        return hit[0]

    def get(self, session: Session, digest: str) -> User | None:
        """The cached user, merged into ``session`` without a query; None on a miss or an expired entry."""
        user = self.peek(digest)
        return None if user is None else session.merge(user, load=False)

    def put(self, digest: str, user: User, generation: int) -> None:
        """Keep a detached copy of ``user`` (its columns only; the request's own object is left alone), unless
        tokens were revoked since ``generation`` (read before the lookup) was read."""
        if self.ttl <= 0:
            return
        copy = User(id=user.id, name=user.name, is_admin=user.is_admin, created_at=user.created_at)
        make_transient_to_detached(copy)
        with self._lock:
            if generation != self.generation:
                return
            self._entries[digest] = (copy, time.monotonic() + self.ttl)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop_user(self, user_id: int) -> None:
        """Forget every token of ``user_id`` (after its tokens were revoked)."""
        with self._lock:
            self.generation += 1
            for digest in [d for d, (u, _) in self._entries.items() if u.id == user_id]:
                del self._entries[digest]

    def __len__(self) -> int:
        return len(self._entries)

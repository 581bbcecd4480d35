"""Whether the broker answers, and which stages its messages carry: for ``/health`` and the worker's reconciler.

:func:`ping` really asks the broker (Redis ``PING`` on a fresh connection; the embedded broker: a file
written and removed in its queue folder), so a broker that went away is reported down, not the state of a
pooled connection opened before it went.

:func:`inspect` lists the stage ids of every job message the broker holds (waiting in a queue, or delivered
to a worker and not yet acknowledged; the stages chained behind a teacher count too), and first declares
again any queue whose binding is gone. A Redis that lost its data (restarted without persistence, or flushed)
has lost the bindings too, and kombu's producers remember that they declared them, so every job sent
afterwards would be dropped without an error until each process reconnects.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from sikd_service.celery_app import TASK_EVALUATE, TASK_TRAIN, app
from sikd_service.config import Settings

STAGE_TASKS = (TASK_TRAIN, TASK_EVALUATE)


def ping(settings: Settings, timeout: float = 2.0) -> None:
    """Raise if the broker does not answer within ``timeout`` seconds."""
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return
    probe = settings.broker_dir / "queue" / f".ping-{os.getpid()}-{uuid.uuid4().hex}.tmp"
    probe.write_bytes(b"")
    probe.unlink()


def _stage_id(task: Any, args: Any) -> int | None:
    if task in STAGE_TASKS and isinstance(args, (list, tuple)) and args and isinstance(args[0], int):
        return int(args[0])
    return None


def stage_ids_of(payload: dict[str, Any]) -> set[int]:
    """The stage ids a Celery (protocol 2) message carries: its own task's and those chained after it."""
    ids: set[int] = set()
    try:
        body: Any = payload.get("body")
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, embed = json.loads(body)
    except (TypeError, ValueError):  # not a job of ours (or not protocol 2): it names no stage
        return ids
    own = _stage_id((payload.get("headers") or {}).get("task"), args)
    if own is not None:
        ids.add(own)
    for sig in (embed or {}).get("chain") or []:
        if isinstance(sig, dict):
            chained = _stage_id(sig.get("task"), sig.get("args"))
            if chained is not None:
                ids.add(chained)
    return ids


@dataclass
class BrokerView:
    stage_ids: set[int] = field(default_factory=set)
    redeclared: list[str] = field(default_factory=list)  # queues whose binding was gone and is declared again


def _redis_payloads(settings: Settings, channel: Any, queues: list[str]) -> list[dict[str, Any]]:
    import redis

    prefix = channel.global_keyprefix  # kombu's prefixed client does not prefix LRANGE / HVALS: done here
    client = redis.Redis.from_url(str(settings.redis_url), socket_connect_timeout=5, socket_timeout=10)
    out = []
    try:
        for q in queues:
            for name in {channel._q_for_pri(q, p) for p in channel.priority_steps}:
                out += [json.loads(m) for m in client.lrange(prefix + name, 0, -1)]
        for m in client.hvals(prefix + channel.unacked_key):  # delivered to a worker, not yet acknowledged
            out.append(json.loads(m)[0])
    finally:
        client.close()
    return out


def _folder_payloads(channel: Any, queues: list[str]) -> list[dict[str, Any]]:
    out = []
    suffixes = tuple(f".{q}.msg" for q in queues)
    for entry in os.scandir(channel.data_folder_in):
        if entry.name.endswith(suffixes) and not entry.name.startswith("."):
            try:
                with open(entry.path, "rb") as f:
                    out.append(json.loads(f.read()))
            except (FileNotFoundError, ValueError):  # taken by a consumer meanwhile
                continue
    return out


def inspect(settings: Settings) -> BrokerView:
    """What the broker holds now (see the module docstring); raises if it cannot be reached."""
    view = BrokerView()
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)
        channel = conn.channel()
        try:
            queues = list(app.amqp.queues.values())
            for q in queues:
                if not any(row[-1] == q.name for row in channel.get_table(q.exchange.name)):
                    q.bind(channel).declare()  # not kombu's cached maybe_declare: the broker forgot it
                    view.redeclared.append(q.name)
            names = [q.name for q in queues]
            payloads = (_redis_payloads(settings, channel, names) if settings.redis_url
                        else _folder_payloads(channel, names))
        finally:
            channel.close()
    for p in payloads:
        view.stage_ids |= stage_ids_of(p)
    return view

"""Lost jobs come back unattended, on the real Postgres and Redis with a real worker process: a stage whose
pool process is SIGKILLed (what the kernel's OOM killer does) runs again within seconds, and fails with the
reason once it has been killed SIKD_MAX_STAGE_ATTEMPTS times; stages whose messages Redis lost (its data
gone: here this test's namespace is deleted, keys, bindings and all) are sent again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.test_service import datasets, experiment, finished, phantom_zips, user  # noqa: F401
from tests.service_helpers import REDIS_URL, descendants, tiny_spec, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=40)]


def pool_process(worker) -> int:
    """The worker's one pool process (``-c 1``): the child of its main process."""
    kids = wait_for(lambda: [p for p in descendants(worker.proc.pid) if _parent(p) == worker.proc.pid], 30,
                    what="the worker's pool process")
    assert len(kids) == 1, kids
    return kids[0]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


@pytest.mark.timeout(240)
def test_a_killed_pool_process_is_noticed_and_a_stage_killed_n_times_fails(api, user, datasets,  # noqa: F811
                                                                         start_worker, stack_settings):
    # the heartbeat recovery is put out of reach: only the worker's reconciler can bring the stage back
    stack_settings.stale_heartbeat_seconds = 600
    stack_settings.max_stage_attempts = 2
    worker = start_worker()
    spec = tiny_spec(datasets, name="it-oom", methods=["baseline"], epochs=2000)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    stage = lambda: experiment(api, user, eid)["stages"][0]  # noqa: E731
    wait_for(lambda: stage()["epoch"] >= 2, 90, 0.2, what="training to run")

    first = pool_process(worker)
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    again = wait_for(lambda: (s := stage())["status"] == "running" and s["attempts"] == 2 and s, 60, 0.2,
                     what="the stage to run again")
    back_after = time.monotonic() - killed
    epoch = again["epoch"]
    wait_for(lambda: stage()["epoch"] > epoch, 60, 0.2, what="the second attempt to train")
    assert "pool process died" in worker.tail(200)
    print(f"stage running again {back_after:.1f} s after its pool process was killed")

    second = pool_process(worker)
    assert second != first
    os.kill(second, signal.SIGKILL)
    exp = finished(api, user, eid, 60, worker)
    st = exp["stages"][0]
    assert exp["status"] == "failed" and st["status"] == "failed", (exp, worker.tail())
    assert "stopped 2 time(s)" in st["error"] and "SIKD_MAX_STAGE_ATTEMPTS=2" in st["error"], st["error"]
    assert "out-of-memory" in st["error"] and "baseline (seed 0) failed" in exp["error"]
    assert st["attempts"] == 2

    # the worker is not stuck: the next experiment runs to the end
    ok = api.post("/experiments", json=tiny_spec(datasets, name="after-oom", methods=["baseline"]), headers=user)
    assert finished(api, user, ok.json()["id"], 120, worker)["status"] == "succeeded"


@pytest.mark.timeout(240)
def test_stages_whose_messages_redis_lost_are_sent_again(api, user, datasets, start_worker,  # noqa: F811
                                                         stack_settings, redis_namespace):
    import redis

    worker = start_worker()
    # two seeds: two baseline stages; the worker (-c 1, prefetch 1) trains one while the other waits in Redis
    spec = tiny_spec(datasets, name="it-flush", methods=["baseline"], seeds=[0, 1], epochs=60)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    wait_for(lambda: any(s["status"] == "running" for s in experiment(api, user, eid)["stages"]), 90, 0.1,
             what="the first stage to run")
    r = redis.Redis.from_url(REDIS_URL)
    queue = f"{redis_namespace}:{stack_settings.train_queue}"
    assert r.llen(queue) == 1  # the second stage's message
    keys = list(r.scan_iter(match=f"{redis_namespace}:*"))  # this test's namespace only: FLUSHALL, for us
    r.delete(*keys)
    lost = time.monotonic()
    assert r.llen(queue) == 0 and experiment(api, user, eid)["status"] == "running"

    wait_for(lambda: r.llen(queue) == 1, 30, 0.2, what="the lost message to be sent again")
    resent_after = time.monotonic() - lost
    exp = finished(api, user, eid, 180, worker)
    assert exp["status"] == "succeeded", (exp, worker.tail())
    assert {s["kind"]: s["status"] for s in exp["stages"]} == {"baseline": "succeeded", "evaluation": "succeeded"}
    log = worker.tail(400)
    assert "the broker lost its message" in log and "declared again" in log, log
    print(f"lost message sent again {resent_after:.1f} s after the namespace was deleted")

"""Lost jobs come back unattended, on the real Postgres and a real Redis with a real worker process: a stage
whose pool process is SIGKILLed (what the kernel's OOM killer does) runs again within seconds, and fails with
the reason once it has been killed SIKD_MAX_STAGE_ATTEMPTS times; stages whose messages Redis lost (flushed,
or restarted without its data) are sent again, and /health says when Redis is down.

Each test runs its own ``redis-server`` (a free port, no persistence), so it can be flushed and restarted
without touching the Redis that other tests share."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_service import datasets, experiment, finished, phantom_zips, user  # noqa: F401
from tests.service_helpers import descendants, free_port, tiny_spec, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=40)]


class OwnRedis:
    def __init__(self, folder: Any):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("these tests need redis-server on PATH (a throw-away Redis they can flush and restart)")
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen([str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                return bool(self.client().ping())
            except Exception:  # noqa: BLE001
                return False

        wait_for(up, 20, 0.1, what="redis-server to answer")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path).start()
    try:
        yield r
    finally:
        r.kill()


@pytest.fixture
def api(stack_settings, own_redis) -> Iterator[Any]:
    """This module's stack (API and workers) uses its own Redis."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    stack_settings.redis_url = own_redis.url
    with TestClient(create_app(stack_settings)) as c:
        yield c


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
                                                         stack_settings, own_redis):
    worker = start_worker()
    # two seeds: two baseline stages; the worker (-c 1, prefetch 1) trains one while the other waits in Redis
    spec = tiny_spec(datasets, name="it-flush", methods=["baseline"], seeds=[0, 1], epochs=60)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    wait_for(lambda: any(s["status"] == "running" for s in experiment(api, user, eid)["stages"]), 90, 0.1,
             what="the first stage to run")
    r = own_redis.client()
    queue = f"{stack_settings.celery_namespace}:{stack_settings.train_queue}"
    assert r.llen(queue) == 1  # the second stage's message
    r.flushall()  # keys, bindings and all
    lost = time.monotonic()
    assert experiment(api, user, eid)["status"] == "running"

    wait_for(lambda: r.llen(queue) == 1, 30, 0.1, what="the lost message to be sent again")
    resent_after = time.monotonic() - lost
    exp = finished(api, user, eid, 180, worker)
    assert exp["status"] == "succeeded", (exp, worker.tail())
    assert [s["status"] for s in exp["stages"]] == ["succeeded"] * 3
    log = worker.tail(400)
    assert "the broker lost its message" in log and "declared again" in log, log
    print(f"lost message sent again {resent_after:.1f} s after FLUSHALL")


@pytest.mark.timeout(300)
def test_redis_restarted_without_its_data(api, user, datasets, start_worker, stack_settings,  # noqa: F811
                                          own_redis):
    worker = start_worker()
    wait_for(lambda: api.get("/health").json()["status"] == "ok", 30, 0.2, what="health ok")
    spec = tiny_spec(datasets, name="it-restart", methods=["baseline"], seeds=[0, 1], epochs=60)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    wait_for(lambda: any(s["status"] == "running" for s in experiment(api, user, eid)["stages"]), 90, 0.1,
             what="the first stage to run")
    own_redis.kill()
    health = api.get("/health").json()
    assert health["status"] == "degraded" and health["broker"]["ok"] is False, health
    assert health["broker"]["detail"].startswith("redis: "), health
    own_redis.start()  # empty: the second stage's message is gone
    restarted = time.monotonic()
    second = lambda: [s for s in experiment(api, user, eid)["stages"] if s["kind"] == "baseline"][1]  # noqa: E731
    wait_for(lambda: second()["status"] != "queued", 90, 0.2, what="the second stage to run")
    ran_after = time.monotonic() - restarted
    exp = finished(api, user, eid, 180, worker)
    assert exp["status"] == "succeeded", (exp, worker.tail())
    assert wait_for(lambda: (h := api.get("/health").json())["status"] == "ok" and h, 30, 0.5, what="health ok")
    assert "the broker lost its message" in worker.tail(400)
    print(f"second stage left 'queued' {ran_after:.1f} s after Redis came back empty")


@pytest.mark.timeout(180)
def test_a_worker_stopping_in_order_gives_its_stage_back_without_counting_it(api, user, datasets,  # noqa: F811
                                                                            start_worker, stack_settings):
    stack_settings.stale_heartbeat_seconds = 600  # only the hand-back can put the stage back in time
    first = start_worker("gpu0")
    spec = tiny_spec(datasets, name="it-stop", methods=["baseline"], epochs=2000)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    stage = lambda: experiment(api, user, eid)["stages"][0]  # noqa: E731
    wait_for(lambda: stage()["epoch"] >= 2, 90, 0.2, what="training to run")
    first.stop()  # SIGTERM, as `sikd serve` or `docker compose stop` send it
    st = stage()
    assert st["status"] == "queued" and st["attempts"] == 0, (st, first.tail())
    assert "its worker is stopping" in first.tail(200)
    second = start_worker("gpu1")  # another worker takes it (the message was sent again) and resumes it
    st = wait_for(lambda: (s := stage())["status"] == "running" and s["resumed_from_epoch"] is not None
                  and s["epoch"] > s["resumed_from_epoch"] and s, 90, 0.2, what="the stage to resume on the other worker")
    assert st["attempts"] == 1 and st["resumed_from_epoch"] >= 2 and st["worker"].startswith("gpu1"), st
    assert api.post(f"/experiments/{eid}/cancel", headers=user).status_code == 200
    assert finished(api, user, eid, 60, second)["status"] == "cancelled"

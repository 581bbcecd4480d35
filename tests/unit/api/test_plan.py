"""GET /datasets/{id}/plan: `sikd plan` on a stored dataset, for the workers' devices and with step times measured
on a worker (the worker's step-timing task runs for real here); its spec is accepted by POST /experiments."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from sikd_service.celery_app import TASK_TIME_STEPS
from tests.service_helpers import drain

pytestmark = pytest.mark.timeout(180)

GPU = {"host": "box", "kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.1, "gpus": 1, "cpu_cores": 32,
       "cpu_threads": 16, "torch_version": "2.5.1"}


def report(settings, worker: str, profile: dict, *, seen_ago: float = 0.0) -> None:
    """A worker's device profile, recorded as a worker records it (``seen_ago`` seconds ago)."""
    from sikd_service import devices
    from sikd_service.db import session_scope
    from sikd_service.tables import utcnow

    with session_scope(settings) as s:
        row = devices.record_profile(s, worker=worker, profile=profile, started=True)
        row.last_seen = utcnow() - timedelta(seconds=seen_ago)


def test_plan_is_timed_on_a_worker_then_reused(client, alice, datasets, jobs, settings):
    a, b = datasets["vendor_a"], datasets["vendor_b"]
    params = {"eval_datasets": [b], "budget_minutes": 5}
    r = client.get(f"/datasets/{a}/plan", params=params, headers=alice)
    assert r.status_code == 200, r.text
    body = r.json()
    spec = body["spec"]
    assert spec["train_dataset"] == a and spec["eval_datasets"] == [b] and spec["network"] == "unet"
    assert spec["image_size"] == [32, 32]  # the phantoms are 32 px: never planned above the median image
    fp = body["fingerprint"]
    assert fp["pairs"] == 16 and fp["num_classes"] == 4 and fp["name"] == "vendor_a" and fp["median_size"] == [32, 32]
    # no worker has reported: the API host's CPU, and nothing measured: no figure, the timing sent to a worker
    assert body["device"]["kind"] == "cpu" and body["device"]["source"] == "API host (no worker has reported)"
    assert "# device: CPU" in body["yaml"] and "API host (no worker has reported)" in body["yaml"]
    est = body["estimate"]
    assert est["seconds"] is None and est["basis"].startswith("not measured yet") and "queued" in est["timing"]
    assert jobs.names() == [[TASK_TIME_STEPS]]
    assert client.get(f"/datasets/{a}/plan", params=params, headers=alice).status_code == 200
    assert len(jobs) == 1  # asked once
    assert [out for _, _, out in drain(jobs)] == ["succeeded"]  # the worker's task: a few steps timed
    body = client.get(f"/datasets/{a}/plan", params=params, headers=alice).json()
    assert body["device"]["source"].startswith("worker worker-1 on ")  # the worker recorded its device
    assert body["device"]["worker"] == "worker-1" and "(the only device of 1 live worker)" in body["device"]["source"]
    est = body["estimate"]
    assert est["seconds"] > 0 and est["basis"].startswith("timed on worker worker-1") and "timing" not in est
    assert est["step_seconds"] > 0 and est["student_step_seconds"] > 0 and not jobs  # reused: nothing sent again
    assert yaml.safe_load(body["yaml"]) == body["spec"] and "# estimated run time" in body["yaml"]
    spec = {**body["spec"], "epochs": 1}  # (the plan's own epochs are fine too; the experiment is only queued here)
    r = client.post("/experiments", json=spec, headers=alice)
    assert r.status_code == 201, r.text


def test_plan_for_the_most_capable_live_worker(client, alice, datasets, jobs, settings):
    a = datasets["vendor_a"]
    report(settings, "cpu1@small", {**GPU, "host": "small", "kind": "cpu", "name": "Xeon", "memory_gib": None,
                                    "gpus": 0, "cpu_cores": 8, "cpu_threads": 8})
    report(settings, "gpu0@box", GPU)
    report(settings, "gpu0@gone", {**GPU, "host": "gone", "memory_gib": 141.0}, seen_ago=3600)  # not live
    body = client.get(f"/datasets/{a}/plan", params={"measure": False}, headers=alice).json()
    dev = body["device"]
    assert dev["kind"] == "cuda" and dev["memory_gib"] == 79.1 and dev["worker"] == "gpu0@box"
    assert "most capable device of 2 live workers" in dev["source"] and body["spec"]["device"] == "cuda"
    assert body["estimate"] is None and not jobs  # measure=false: no estimate, nothing sent
    batch = [r for r in body["reasons"]["batch"] if "images fit" in r]
    assert batch and "half of 79.1 GiB" in batch[0]
    cpu = client.get(f"/datasets/{a}/plan", params={"measure": False, "device": "cpu"}, headers=alice).json()
    assert cpu["device"]["kind"] == "cpu" and cpu["device"]["cores"] == 32  # the GPU box has the most cores
    assert cpu["spec"]["device"] == "cpu"
    described = client.get(f"/datasets/{a}/plan", params={"measure": False, "device_memory_gb": 16},
                           headers=alice).json()
    assert described["device"]["memory_gib"] == 16 and described["device"]["source"] == "described in the request"
    # no live worker: the most capable one that ever reported, said so
    from sikd_service.db import session_scope
    from sikd_service.tables import WorkerDevice, utcnow

    with session_scope(settings) as s:
        for row in s.query(WorkerDevice):
            row.last_seen = utcnow() - timedelta(hours=2)
    dev = client.get(f"/datasets/{a}/plan", params={"measure": False}, headers=alice).json()["device"]
    assert dev["worker"] == "gpu0@gone" and dev["memory_gib"] == 141.0 and "no worker is live now" in dev["source"]


def test_a_failed_timing_is_said_and_asked_again_later(client, alice, datasets, jobs, settings):
    from sikd_service import steptimes
    from sikd_service.db import session_scope
    from sikd_service.tables import StepTiming, utcnow

    cfg = steptimes.StepConfig.of("no-such-network", {}, 1, 2, [32, 32], 2)
    with session_scope(settings) as s:
        ids = steptimes.request(s, [cfg])
        assert steptimes.request(s, [cfg]) == []  # queued already
    assert [out for _, _, out in drain(jobs)] == ["failed"]
    from worker.tasks import run_step_timing

    assert run_step_timing(ids[0], worker="worker-2") == "skipped"  # a duplicate message claims nothing
    with session_scope(settings) as s:
        note = steptimes.pending_note(s, [cfg])
        assert note.startswith("timing no-such-network 32x32 batch 2 failed on worker-1: unknown network 'no-such-network'")
        assert steptimes.request(s, [cfg]) == []  # not at once
        s.get(StepTiming, ids[0]).measured_at = utcnow() - timedelta(seconds=steptimes.RETRY_SECONDS + 1)
        s.get(StepTiming, ids[0]).requested_at = utcnow() - timedelta(seconds=steptimes.RETRY_SECONDS + 1)
    with session_scope(settings) as s:
        assert steptimes.request(s, [cfg]) == ids  # but after RETRY_SECONDS
    assert jobs.names() == [[TASK_TIME_STEPS]]


def test_plan_errors(client, alice, bob, datasets, jobs, settings):
    a = datasets["vendor_a"]
    assert client.get("/datasets/999/plan", headers=alice).status_code == 404
    assert client.get(f"/datasets/{a}/plan", headers=bob).status_code == 404  # not bob's
    r = client.get(f"/datasets/{a}/plan", params={"device": "tpu", "measure": False}, headers=alice)
    assert r.status_code == 422 and "device must be" in r.json()["detail"]
    r = client.get(f"/datasets/{a}/plan", params={"device": "cuda", "measure": False}, headers=alice)
    assert r.status_code == 422 and "no worker has reported a GPU" in r.json()["detail"]
    r = client.get(f"/datasets/{a}/plan", params={"device_memory_gb": 0, "measure": False}, headers=alice)
    assert r.status_code == 422
    r = client.get(f"/datasets/{a}/plan", params={"eval_datasets": [998], "measure": False}, headers=alice)
    assert r.status_code == 404
    r = client.get(f"/datasets/{a}/plan", params={"measure": False}, headers=alice)
    assert r.status_code == 200 and r.json()["estimate"] is None and not jobs


def test_a_pairs_read_time_is_measured_once_per_stored_dataset(client, alice, datasets, jobs, settings, monkeypatch):
    """The first plan of a dataset reads a sample of its pairs to time a read (about a second on a real dataset);
    the next plans reuse that figure (their sizes and classes come from the upload's full scan anyway)."""
    from sikd_core.data import scan
    from sikd_service import datasets as service_datasets

    monkeypatch.setattr(service_datasets, "_READ_SECONDS", {})  # (this process planned these datasets before)
    reads: list[str] = []
    real = scan.sampled_stats

    def counted(manifest):
        reads.append(manifest.name)
        return real(manifest)

    monkeypatch.setattr(scan, "sampled_stats", counted)
    a, b = datasets["vendor_a"], datasets["vendor_b"]
    first = client.get(f"/datasets/{a}/plan", headers=alice)
    assert first.status_code == 200, first.text
    assert len(reads) == 1 and first.json()["fingerprint"]["read_seconds_per_pair"] > 0
    again = client.get(f"/datasets/{a}/plan", headers=alice)
    assert again.status_code == 200, again.text
    assert len(reads) == 1 and again.json()["fingerprint"] == first.json()["fingerprint"]
    assert client.get(f"/datasets/{b}/plan", headers=alice).status_code == 200
    assert len(reads) == 2  # another dataset is timed on its own first plan

"""End to end on the real Postgres and Redis with real Celery worker processes: a tiny experiment on
SYNTHETIC phantoms from upload to prediction, cancelling a running experiment, and a worker killed
mid-stage whose successor resumes from the checkpoint."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.service_helpers import png_bytes, tiny_spec, upload, wait_for, zip_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=35)]

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}


@pytest.fixture(scope="module")
def phantom_zips(tmp_path_factory) -> dict[str, bytes]:
    from sikd_core.data import generate_phantoms

    root = tmp_path_factory.mktemp("it_phantoms")
    return {d: zip_folder(generate_phantoms(root / d, domain=d, n=n, seed=s, size=32), top=d)
            for d, n, s in (("vendor_a", 16, 1), ("vendor_b", 6, 2))}


@pytest.fixture
def user(api) -> dict[str, str]:
    r = api.post("/users", json={"name": "it-user"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def datasets(api, user, phantom_zips) -> dict[str, int]:
    ids = {}
    for d, data in phantom_zips.items():
        r = upload(api, user, data, name=d)
        assert r.status_code == 201, r.text
        ids[d] = r.json()["id"]
    return ids


def experiment(api, headers, eid) -> dict:
    return api.get(f"/experiments/{eid}", headers=headers).json()


def epochs_recorded(api, headers, eid) -> int:
    """How many epoch rows the experiment's stages have recorded."""
    return sum(len(m["epochs"]) for m in api.get(f"/experiments/{eid}/metrics", headers=headers).json()["data"])


def finished(api, headers, eid, timeout: float, worker) -> dict:
    def done():
        e = experiment(api, headers, eid)
        return e if e["status"] not in ("queued", "running") else None

    try:
        return wait_for(done, timeout, 0.3, what=f"experiment {eid} to finish")
    except BaseException:
        print(worker.tail())
        raise


@pytest.mark.timeout(240)
def test_upload_train_evaluate_download_predict(api, user, datasets, start_worker, tmp_path):
    worker = start_worker()
    # ok once the worker answers; its device is known once the child process started with it has read it
    health = wait_for(lambda: (h := api.get("/health").json())["status"] == "ok" and h["workers"]["devices"] and h,
                      60, what="health ok with the worker's device")
    assert health["workers"]["count"] == 1 and health["workers"]["names"][0].startswith(worker.name)
    # the worker says what it trains on (this machine has no GPU): the dashboard picks its size preset from it
    assert health["workers"]["devices"][health["workers"]["names"][0]] == {"accelerator": "cpu", "gpus": 0,
                                                                          "gpu_names": []}
    assert health["broker"]["detail"].startswith("redis") and health["database"]["detail"].startswith("postgresql")

    r = api.post("/experiments", json=tiny_spec(datasets, name="it-full"), headers=user)
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    exp = finished(api, user, eid, 180, worker)
    assert exp["status"] == "succeeded", (exp, worker.tail())
    assert all(s["status"] == "succeeded" and s["worker"].startswith(worker.name) for s in exp["stages"])
    assert exp["progress"] == 1.0

    res = api.get(f"/experiments/{eid}/results", headers=user).json()
    assert res["count"] == 4 and {r["split"] for r in res["data"]} == {"intra", "cross"}
    assert "| SIKD |" in api.get(f"/experiments/{eid}/report", headers=user).text
    ov = api.get(f"/experiments/{eid}/overlays?dataset=vendor_b&sort=dice_diff", headers=user).json()
    assert ov["count"] > 0 and api.get(ov["data"][0]["url"], headers=user).status_code == 200
    metrics = api.get(f"/experiments/{eid}/metrics", headers=user).json()
    assert all([e["epoch"] for e in m["epochs"]] == [1, 2] for m in metrics["data"])

    models = api.get(f"/models?experiment_id={eid}", headers=user).json()
    assert models["count"] == 2
    sikd = next(m for m in models["data"] if m["method"] == "sikd")
    bundle = api.get(f"/models/{sikd['id']}/download", headers=user)
    assert bundle.status_code == 200
    (tmp_path / "m.pt").write_bytes(bundle.content)
    from sikd_core.inference import load_bundle

    assert load_bundle(tmp_path / "m.pt").info["method"] == "sikd"
    img = np.random.default_rng(1).integers(0, 255, (36, 44), dtype=np.uint8)
    p = api.post(f"/models/{sikd['id']}/predict", headers=user, files=[("files", ("x.png", png_bytes(img), "image/png"))])
    assert p.status_code == 200, p.text
    pred = p.json()["data"][0]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["mask_png"]))))
    assert mask.shape == (36, 44) and pred["width"] == 44 and pred["height"] == 36


@pytest.mark.timeout(180)
def test_cancel_a_running_experiment(api, user, datasets, start_worker, stack_settings):
    worker = start_worker()
    r = api.post("/experiments", json=tiny_spec(datasets, name="it-cancel", methods=["baseline"], epochs=2000),
                 headers=user)
    eid = r.json()["id"]
    wait_for(lambda: experiment(api, user, eid)["stages"][0]["epoch"] >= 2, 90, 0.2, what="training to run")
    assert api.post(f"/experiments/{eid}/cancel", headers=user).json()["status"] == "cancelled"
    # Committed: the stack checks for a cancel after every step (cancel_check_seconds=0 here; the throttle
    # itself is tested in tests/unit/worker/test_progress.py), so at most the epoch in flight can still
    # record its row (no clock: the 60 s wait only guards a hang).
    recorded_at_cancel = epochs_recorded(api, user, eid)
    stage = wait_for(lambda: (s := experiment(api, user, eid)["stages"][0])["status"] == "cancelled" and s, 60, 0.1,
                     what="the stage to stop")
    assert epochs_recorded(api, user, eid) <= recorded_at_cancel + 1
    assert stage["epoch"] < 2000 and stage["finished_at"]
    assert experiment(api, user, eid)["status"] == "cancelled"
    # The worker is free again: a new experiment runs to the end.
    r = api.post("/experiments", json=tiny_spec(datasets, name="after-cancel", methods=["baseline"]), headers=user)
    assert finished(api, user, r.json()["id"], 120, worker)["status"] == "succeeded"


@pytest.mark.timeout(300)
def test_killed_worker_is_replaced_and_the_stage_resumes_from_its_checkpoint(api, user, datasets, start_worker):
    first = start_worker("gpu0")
    spec = tiny_spec(datasets, name="it-kill", methods=["sikd"], epochs=4, teacher_epochs=40, steps_per_epoch=8)
    eid = api.post("/experiments", json=spec, headers=user).json()["id"]
    teacher = lambda: next(s for s in experiment(api, user, eid)["stages"] if s["kind"] == "teacher")  # noqa: E731
    wait_for(lambda: teacher()["epoch"] >= 4, 120, 0.1, what="the teacher's fourth epoch")
    first.sigkill()
    killed_at = teacher()
    assert killed_at["status"] == "running" and killed_at["epoch"] < 40, killed_at
    second = start_worker("gpu0")  # the same worker name, as after a restart
    exp = finished(api, user, eid, 240, second)
    assert exp["status"] == "succeeded", (exp, second.tail())
    t = next(s for s in exp["stages"] if s["kind"] == "teacher")
    assert t["attempts"] == 2 and t["resumed_from_epoch"] >= 3, t
    metrics = api.get(f"/experiments/{eid}/metrics", headers=user).json()
    rows = next(m for m in metrics["data"] if m["kind"] == "teacher")["epochs"]
    assert [e["epoch"] for e in rows] == list(range(1, 41))  # every epoch once, none repeated
    after = [e["epoch"] for e in rows if e["attempt"] == 2]
    assert after and min(after) == t["resumed_from_epoch"] + 1 > 1  # continued, not restarted
    assert "requeued" in second.tail(400) or "requeueing" in second.tail(400)


@pytest.mark.timeout(240)
def test_a_real_worker_reports_its_device_and_times_the_plans_steps(api, user, datasets, start_worker):
    """A started worker records its device; GET /datasets/{id}/plan is then made for it, answers at once while
    the worker (over Redis) times the planned configuration, and a later call reads that timing."""
    a = datasets["vendor_a"]
    worker = start_worker()

    def planned_for_the_worker():
        dev = api.get(f"/datasets/{a}/plan", params={"measure": False}, headers=user).json()["device"]
        return dev if dev.get("worker", "").startswith(worker.name) else None

    dev = wait_for(planned_for_the_worker, 120, 0.5, what="the worker's device profile")
    assert "(the only device of 1 live worker)" in dev["source"] and dev["kind"] in ("cpu", "cuda")
    first = api.get(f"/datasets/{a}/plan", headers=user).json()["estimate"]
    assert first["seconds"] is None and first["basis"].startswith("not measured yet")

    def timed():
        est = api.get(f"/datasets/{a}/plan", headers=user).json()["estimate"]
        return est if est["seconds"] is not None else None

    try:
        est = wait_for(timed, 120, 0.5, what="the worker to time the planned steps")
    except BaseException:
        print(worker.tail())
        raise
    assert est["basis"].startswith(f"timed on worker {worker.name}@") and est["step_seconds"] > 0

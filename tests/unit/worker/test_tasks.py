"""The worker's task functions run directly on real rows (tiny specs on SYNTHETIC phantoms), on SQLite
and on Postgres: claiming, progress, metrics, models, the one evaluation, failures, cancel, takeover,
recovery and resuming from a checkpoint."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from sikd_service import crud
from sikd_service.db import session_scope
from sikd_service.tables import EpochMetric, Experiment, Stage, TrainedModel, utcnow
from tests.service_helpers import drain, tiny_spec, wait_for
from worker import tasks
from worker.recovery import recover

pytestmark = [pytest.mark.slow(seconds=15), pytest.mark.timeout(120)]


def create(client, headers, datasets, **kw) -> dict:
    r = client.post("/experiments", json=tiny_spec(datasets, **kw), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def stage_ids(exp: dict) -> dict[tuple[str, int | None], int]:
    return {(s["kind"], s["seed"]): s["id"] for s in exp["stages"]}


def rows(settings, model, **where):
    with session_scope(settings) as s:
        q = select(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return list(s.scalars(q))


def test_experiment_runs_through_the_tasks(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets)
    done = drain(jobs)
    assert [(name, out) for name, _, out in done] == [
        ("sikd.train_stage", "succeeded"), ("sikd.train_stage", "succeeded"), ("sikd.train_stage", "succeeded"),
        ("sikd.evaluate", "succeeded")]  # the evaluation was enqueued exactly once
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["status"] == "succeeded" and got["progress"] == 1.0 and got["error"] is None
    assert got["started_at"] and got["finished_at"] >= got["started_at"]
    for st in got["stages"]:
        assert st["status"] == "succeeded" and st["progress"] == 1.0 and st["worker"] == "worker-1"
        assert st["attempts"] == 1 and st["finished_at"] and st["error"] is None
        if st["kind"] != "evaluation":
            assert st["epoch"] == st["epochs"] == 2 and st["loss"] > 0 and st["best_val_dice"] is not None
            assert st["resumed_from_epoch"] is None
    metrics = client.get(f"/experiments/{exp['id']}/metrics", headers=alice).json()
    for m in metrics["data"]:
        assert [e["epoch"] for e in m["epochs"]] == [1, 2] and {e["attempt"] for e in m["epochs"]} == {1}
        assert all(e["lr"] > 0 and e["train_seconds"] > 0 and len(e["val_dice_per_class"]) == 3 for e in m["epochs"])
        if m["kind"] == "student":
            assert all(e["kd_loss"] is not None and e["seg_loss"] is not None for e in m["epochs"])
    models = rows(settings, TrainedModel, experiment_id=exp["id"])
    assert sorted((m.method, m.seed) for m in models) == [("baseline", 0), ("sikd", 0)]
    assert all((settings.storage_dir / m.path).is_file() and m.path.endswith("model.pt") for m in models)


def test_duplicate_and_early_deliveries_claim_nothing(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets)
    ids = stage_ids(exp)
    assert tasks.run_training_stage(ids["student", 0]) == "skipped"  # its teacher has not run
    assert tasks.run_evaluation_stage(ids["evaluation", None]) == "skipped"
    drain(jobs)
    for sid in ids.values():  # redelivered after success: nothing happens
        assert tasks.run_training_stage(sid) == "skipped"
    assert tasks.run_evaluation_stage(ids["evaluation", None]) == "skipped"
    assert tasks.run_training_stage(987654) == "skipped"
    assert all(s.attempts == 1 for s in rows(settings, Stage, experiment_id=exp["id"]))


def test_a_running_stage_cannot_be_claimed_twice_until_its_heartbeat_is_stale(client, alice, datasets, jobs,
                                                                               settings):
    exp = create(client, alice, datasets, methods=["baseline"])
    sid = stage_ids(exp)["baseline", 0]
    old = utcnow() - timedelta(seconds=60)
    with session_scope(settings) as s:
        assert crud.claim_stage(s, stage_id=sid, token="a" * 32, worker="w1", stale_before=old)
    with session_scope(settings) as s:
        assert not crud.claim_stage(s, stage_id=sid, token="b" * 32, worker="w2", stale_before=old)
        # w1 is presumed dead once its heartbeat is older than the threshold: w2 takes over ...
        assert crud.claim_stage(s, stage_id=sid, token="b" * 32, worker="w2", stale_before=utcnow() + timedelta(1))
    with session_scope(settings) as s:
        # ... and w1's writes no longer match: it learns that it lost the stage.
        assert not crud.update_claimed_stage(s, stage_id=sid, token="a" * 32, progress=0.5)
        assert crud.update_claimed_stage(s, stage_id=sid, token="b" * 32, progress=0.5)
        st = s.get(Stage, sid)
        assert st.worker == "w2" and st.attempts == 2 and st.status == "running"
    with session_scope(settings) as s:
        assert s.get(Experiment, exp["id"]).status == "running"


def test_the_evaluation_is_queued_once_after_the_last_training_stage(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets, seeds=[0, 1], methods=["baseline"])
    ids = stage_ids(exp)
    jobs.clear()
    assert tasks.run_training_stage(ids["baseline", 0]) == "succeeded"
    assert not jobs  # seed 1 is not trained yet
    with session_scope(settings) as s:
        assert crud.queue_evaluation_once(s, experiment_id=exp["id"]) is None
    assert tasks.run_training_stage(ids["baseline", 1]) == "succeeded"
    assert jobs == [[("sikd.evaluate", (ids["evaluation", None],))]]
    with session_scope(settings) as s:  # nobody else gets it again
        assert crud.queue_evaluation_once(s, experiment_id=exp["id"]) is None


def test_failure_is_recorded_and_stops_the_experiment(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets)
    ids = stage_ids(exp)
    image = settings.datasets_dir / str(datasets["vendor_a"]) / "vendor_a" / "images" / "0003.png"
    image.write_bytes(b"not a png any more")
    assert tasks.run_training_stage(ids["baseline", 0]) == "failed"
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    st = {s["kind"]: s for s in got["stages"]}
    assert st["baseline"]["status"] == "failed" and "0003.png" in st["baseline"]["error"]
    assert "Traceback" in st["baseline"]["traceback_summary"]
    assert got["status"] == "failed" and got["error"].startswith("baseline (seed 0) failed: ")
    assert {st[k]["status"] for k in ("teacher", "student", "evaluation")} == {"cancelled"}
    assert tasks.run_training_stage(ids["teacher", 0]) == "skipped"


def test_training_health_errors_are_shown_as_they_are(client, alice, datasets, jobs, settings, monkeypatch):
    from sikd_core.errors import TrainingHealthError
    from sikd_core.pipeline import ExperimentRun

    msg = "baseline: the loss became nan at epoch 1, step 2; training stopped. Lower the learning rate."

    def unhealthy(self, stage, seed, callbacks=()):
        raise TrainingHealthError(msg)

    monkeypatch.setattr(ExperimentRun, "run_stage", unhealthy)
    exp = create(client, alice, datasets, methods=["baseline"])
    assert tasks.run_training_stage(stage_ids(exp)["baseline", 0]) == "failed"
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["stages"][0]["error"] == msg and got["error"] == f"baseline (seed 0) failed: {msg}"


def test_cancel_stops_a_running_stage_within_a_step(client, alice, datasets, jobs, settings, monkeypatch):
    """Cancel is checked after every training step and the stage stops at the first check after the cancel
    is committed: at most the step already running finishes. (No clock: the timeouts only guard a hang.)"""
    from worker import progress

    steps: list[int] = []
    checks: list[bool] = []
    real_step_end, real_cancel = progress.DbProgressCallback.on_step_end, progress.cancel_requested

    def step_end(self, trainer, logs):
        steps.append(trainer.state.global_step)
        real_step_end(self, trainer, logs)

    def cancel_requested(s, experiment_id):
        checks.append(real_cancel(s, experiment_id))
        return checks[-1]

    monkeypatch.setattr(progress.DbProgressCallback, "on_step_end", step_end)
    monkeypatch.setattr(progress, "cancel_requested", cancel_requested)
    exp = create(client, alice, datasets, methods=["baseline"], epochs=500, batch_size=1)  # many steps per epoch
    sid = stage_ids(exp)["baseline", 0]
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", tasks.run_training_stage(sid)))
    t.start()
    try:
        wait_for(lambda: rows(settings, Stage, id=sid)[0].epoch >= 2, 120, what="two epochs")
        assert client.post(f"/experiments/{exp['id']}/cancel", headers=alice).status_code == 200
        steps_at_cancel = len(steps)  # the cancel is committed: any step started from now on sees it
    finally:
        t.join(120)
    assert not t.is_alive(), "the stage did not stop"
    assert out["r"] == "cancelled"
    assert len(steps) <= steps_at_cancel + 1, (steps_at_cancel, len(steps))
    assert len(checks) == len(steps) and checks[-1] is True and not any(checks[:-1])
    st = rows(settings, Stage, id=sid)[0]
    assert st.status == "cancelled" and st.epoch < 500 and st.finished_at is not None
    assert client.get(f"/experiments/{exp['id']}", headers=alice).json()["status"] == "cancelled"


def test_recovery_requeues_stages_of_dead_workers(client, alice, datasets, jobs, settings):
    a = create(client, alice, datasets)
    # reuse off: their baselines, identical to a's, would wait for it (tests/unit/api/test_reuse.py)
    b = create(client, alice, datasets, methods=["baseline"], reuse=False)
    c = create(client, alice, datasets, methods=["baseline"], reuse=False)
    jobs.clear()
    ta, bb, cb = stage_ids(a)["teacher", 0], stage_ids(b)["baseline", 0], stage_ids(c)["baseline", 0]
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope(settings) as s:
        for sid, worker in ((ta, "gpu0@host"), (bb, "gpu1@host"), (cb, "gpu2@host")):
            assert crud.claim_stage(s, stage_id=sid, token=f"{sid:032d}", worker=worker, stale_before=long_ago)
        s.get(Stage, ta).heartbeat_at = long_ago  # gpu0 died an hour ago
        s.get(Stage, bb).heartbeat_at = utcnow() - timedelta(seconds=5)  # gpu1 restarted: same name, new process
    assert client.post(f"/experiments/{c['id']}/cancel", headers=alice).status_code == 200
    with session_scope(settings) as s:
        s.get(Stage, cb).heartbeat_at = long_ago  # gpu2 died after its experiment was cancelled
    assert recover(settings) == [ta]
    student = stage_ids(a)["student", 0]
    assert jobs == [[("sikd.train_stage", (ta,)), ("sikd.train_stage", (student,))]]  # the chain again
    assert rows(settings, Stage, id=cb)[0].status == "cancelled"
    assert rows(settings, Stage, id=bb)[0].status == "running"  # its heartbeat is fresh
    assert recover(settings, worker="gpu1@host", worker_started=utcnow()) == [bb]
    assert recover(settings) == []
    assert {s.status for s in rows(settings, Stage, id=ta) + rows(settings, Stage, id=bb)} == {"queued"}
    done = drain(jobs)  # a's teacher and student, then b's baseline and (now complete) its evaluation
    assert [(args[0], out) for _, args, out in done[:3]] == [(ta, "succeeded"), (student, "succeeded"),
                                                             (bb, "succeeded")]
    assert [(name, out) for name, _, out in done[3:]] == [("sikd.evaluate", "succeeded")]


def test_a_stage_killed_mid_training_resumes_from_its_checkpoint(client, alice, datasets, jobs, settings,
                                                                 monkeypatch):
    """The worker dies after epoch 2's checkpoint but before epoch 2 is recorded; the next attempt resumes
    at epoch 3 and recovers epoch 2's metrics from the checkpoint."""
    from worker.progress import DbProgressCallback

    exp = create(client, alice, datasets, methods=["baseline"], epochs=4)
    sid = stage_ids(exp)["baseline", 0]
    original = DbProgressCallback.on_epoch_end

    def dies_at_epoch_2(self, trainer, logs):
        if logs["epoch"] == 2:
            raise KeyboardInterrupt("worker killed")
        original(self, trainer, logs)

    monkeypatch.setattr(DbProgressCallback, "on_epoch_end", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        tasks.run_training_stage(sid)
    monkeypatch.setattr(DbProgressCallback, "on_epoch_end", original)
    st = rows(settings, Stage, id=sid)[0]
    assert st.status == "running" and st.epoch == 2  # as a dead worker leaves it
    assert (settings.experiments_dir / str(exp["id"]) / "seed_0" / "baseline" / "latest.pt").is_file()
    with session_scope(settings) as s:
        s.get(Stage, sid).heartbeat_at = utcnow() - timedelta(hours=1)
    jobs.clear()
    assert recover(settings) == [sid]
    assert [o for _, _, o in drain(jobs)][0] == "succeeded"
    st = rows(settings, Stage, id=sid)[0]
    assert st.status == "succeeded" and st.attempts == 2 and st.resumed_from_epoch == 2
    epochs = sorted((m.epoch, m.attempt) for m in rows(settings, EpochMetric, stage_id=sid))
    assert epochs == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_remove_paths_stays_inside_the_storage_root(settings, tmp_path):
    inside = settings.tmp_dir / "trash-x"
    inside.mkdir(parents=True)
    outside = tmp_path / "keep"
    outside.mkdir()
    assert tasks.remove_paths([str(inside), str(outside), str(settings.storage_dir / ".." / "keep")]) == 1
    assert not inside.exists() and outside.exists()


def test_deleting_a_running_experiment_stops_it_and_removes_its_files(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets, methods=["baseline"], epochs=500)
    sid = stage_ids(exp)["baseline", 0]
    workdir = settings.experiments_dir / str(exp["id"])
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", tasks.run_training_stage(sid)))
    t.start()
    try:
        wait_for(lambda: rows(settings, Stage, id=sid) and rows(settings, Stage, id=sid)[0].epoch >= 2, 60,
                 what="two epochs")
        assert (workdir / "seed_0" / "baseline" / "latest.pt").is_file()
        assert client.delete(f"/experiments/{exp['id']}", headers=alice).status_code == 204
    finally:
        t.join(60)
    assert out["r"] == "cancelled"
    assert not workdir.exists()  # also what the stage wrote after the API removed the folder
    assert rows(settings, Stage, experiment_id=exp["id"]) == []
    assert rows(settings, EpochMetric, stage_id=sid) == []


def test_a_stage_sent_to_the_wrong_task_is_left_alone(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets, methods=["baseline"])
    ids = stage_ids(exp)
    assert tasks.run_evaluation_stage(ids["baseline", 0]) == "skipped"
    assert rows(settings, Stage, id=ids["baseline", 0])[0].status == "queued"


@pytest.mark.timeout(400)
def test_plug_in_methods_and_their_sikd_compositions_run_through_the_tasks(client, alice, datasets, jobs, settings):
    exp = create(client, alice, datasets, methods=["baseline", "gin", "gin+sikd", "sdm+sikd"], epochs=1,
                 train_dataset=[datasets["vendor_a"], datasets["vendor_b"]], eval_datasets=[])
    done = drain(jobs)
    assert [out for _, _, out in done] == ["succeeded"] * 6  # baseline, gin, teacher + 2 students, evaluation
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["status"] == "succeeded", got["error"]
    models = rows(settings, TrainedModel, experiment_id=exp["id"])
    assert sorted(m.method for m in models) == ["baseline", "gin", "gin+sikd", "sdm+sikd"]  # never the teacher
    results = client.get(f"/experiments/{exp['id']}/results", headers=alice).json()
    assert {(r["method"], r["dataset"]) for r in results["data"]} == {
        (m, d) for m in ("baseline", "gin", "gin+sikd", "sdm+sikd") for d in ("vendor_a", "vendor_b")}
    assert results["methods"] == ["baseline", "gin", "gin+sikd", "sdm+sikd"]
    assert results["train_datasets"] == ["vendor_a", "vendor_b"]
    pairs = {(c["method"], c["reference"]) for c in results["comparisons"]}
    assert pairs == {("gin", "baseline"), ("gin+sikd", "baseline"), ("sdm+sikd", "baseline"), ("gin+sikd", "gin")}


def test_a_stage_whose_checkpoint_cannot_be_written_fails_with_the_path_and_errno(client, alice, datasets, jobs,
                                                                                  settings):
    """The stage's folder is read-only (really: ``chattr +i`` as root): the stage fails with a message naming the
    checkpoint's path and the errno, not torch's "File ... cannot be opened."."""
    import os
    import shutil
    import subprocess

    exp = create(client, alice, datasets, methods=["baseline"])
    folder = settings.experiments_dir / str(exp["id"]) / "seed_0" / "baseline"
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)]).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    else:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    try:
        assert tasks.run_training_stage(stage_ids(exp)["baseline", 0]) == "failed"
    finally:
        undo()
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    error = got["stages"][0]["error"]
    assert error.startswith("cannot write the checkpoint <storage>/experiments/") or \
        error.startswith(f"cannot write the checkpoint {folder}"), error
    assert "[Errno " in error and ("EACCES" in error or "EPERM" in error), error
    assert "cannot be opened" not in error


@pytest.mark.parametrize("how", ["terminated", "claim_given_back"])
def test_a_stage_interrupted_by_its_stopping_worker_does_not_fail_the_experiment(client, alice, datasets, jobs,
                                                                              settings, monkeypatch, how):
    """A worker stopping in order gives its stage back (queued) while its pool process gets SIGTERM (billiard's
    ``Terminated``, an Exception): the task must neither fail the stage nor cancel the experiment's other
    stages, whichever of the two happens first (seen in the suite: the handed-back stage ended 'cancelled')."""
    from billiard.exceptions import Terminated

    from sikd_service import crud
    from sikd_service.db import session_scope
    from worker import progress

    exp = create(client, alice, datasets, methods=["baseline"], epochs=50)
    sid = stage_ids(exp)["baseline", 0]
    real = progress.DbProgressCallback.on_epoch_end

    def epoch_end(self, trainer, logs):
        real(self, trainer, logs)
        if how == "claim_given_back":  # the worker's hand-back ran first: the claim is no longer the task's
            with session_scope(settings) as s:
                st = crud.get_stage(s, stage_id=sid)
                assert crud.hand_back(s, prefix=st.claim_token[:8])
        raise Terminated(15) if how == "terminated" else RuntimeError("interrupted by the stopping worker")

    monkeypatch.setattr(progress.DbProgressCallback, "on_epoch_end", epoch_end)
    assert tasks.run_training_stage(sid) == "lost"
    got = client.get(f"/experiments/{exp['id']}", headers=alice).json()
    assert got["status"] not in ("failed", "cancelled") and not got.get("error"), got
    status = {s["kind"]: s["status"] for s in got["stages"]}
    assert status["baseline"] == ("running" if how == "terminated" else "queued"), status
    assert status["evaluation"] == "pending", status

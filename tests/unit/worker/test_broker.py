"""The embedded broker (kombu's filesystem transport with atomic puts and gets) between processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kombu import Connection

pytestmark = pytest.mark.timeout(90)


def options(root: Path) -> dict:
    for sub in ("queue", "control"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {"data_folder_in": str(root / "queue"), "data_folder_out": str(root / "queue"),
            "control_folder": str(root / "control"), "polling_interval": 0.05}


def connection(root: Path) -> Connection:
    return Connection("filesystem://", transport="sikd_service.broker:Transport", transport_options=options(root))


def test_roundtrip_and_half_written_messages_are_invisible(tmp_path):
    with connection(tmp_path) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"stage": 1})
        names = [p.name for p in (tmp_path / "queue").iterdir()]
        assert len(names) == 1 and names[0].endswith(".jobs.msg") and not names[0].startswith(".")
        # A message still being written has a hidden name: consumers skip it.
        (tmp_path / "queue" / ".0_x.jobs.msg.tmp").write_bytes(b"{half")
        assert q.get(timeout=1).payload == {"stage": 1}
        with pytest.raises(q.Empty):
            q.get(timeout=0.2)
        q.close()


CONSUMER = textwrap.dedent("""
    import sys, time
    from kombu import Connection
    from tests.unit.worker.test_broker import options
    from pathlib import Path
    root, out = Path(sys.argv[1]), open(sys.argv[2], "w")
    with Connection("filesystem://", transport="sikd_service.broker:Transport", transport_options=options(root)) as c:
        q = c.SimpleQueue("jobs")
        Path(sys.argv[2] + ".ready").touch()
        idle = time.monotonic()
        while time.monotonic() - idle < 3:
            try:
                m = q.get(timeout=0.2)
            except q.Empty:
                continue
            out.write(f"{m.payload['i']}\\n"); out.flush(); m.ack(); idle = time.monotonic()
            time.sleep(0.002)  # a little work per message, as a worker has
""")


def test_connections_to_different_folders_do_not_mix(tmp_path):
    for name in ("one", "two"):
        with connection(tmp_path / name) as conn:
            q = conn.SimpleQueue("jobs")
            q.put({"to": name})
            q.close()
    for name in ("one", "two"):
        with connection(tmp_path / name) as conn:
            q = conn.SimpleQueue("jobs")
            assert q.get(timeout=1).payload == {"to": name}
            q.close()


def test_competing_consumer_processes_get_each_message_exactly_once(tmp_path):
    root = Path(__file__).resolve().parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", CONSUMER, str(tmp_path), str(tmp_path / f"got{i}.txt")],
                              cwd=root) for i in range(2)]
    try:
        deadline = time.monotonic() + 30  # both consumers listening before anything is sent
        while not all((tmp_path / f"got{i}.txt.ready").exists() for i in range(2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "consumers did not start"
            time.sleep(0.05)
        with connection(tmp_path) as conn:
            q = conn.SimpleQueue("jobs")
            for i in range(300):
                q.put({"i": i})
            q.close()
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    got = [int(x) for i in range(2) for x in (tmp_path / f"got{i}.txt").read_text().split()]
    assert sorted(got) == list(range(300))
    assert all((tmp_path / f"got{i}.txt").read_text() for i in range(2))  # both consumers took part
    assert not list((tmp_path / "queue").iterdir())


def test_the_broker_view_lists_the_stages_its_messages_carry_and_declares_forgotten_queues(tmp_path):
    """What the worker's reconciler compares with the queued stages (the embedded broker here; Redis in
    tests/integration/test_recovery.py): each job's stage and those chained behind it; then a broker that
    lost everything (its folders emptied) has its queue bindings declared again and delivers new jobs."""
    import shutil

    from sikd_service import broker_state, dispatch
    from sikd_service.celery_app import configure
    from sikd_service.config import Settings, set_settings
    from sikd_service.storage import ensure_layout

    s = Settings(storage_dir=tmp_path / "storage", demo_data=False)
    ensure_layout(s)
    set_settings(s)
    configure(s)
    try:
        dispatch.enqueue_training(5, then_student_ids=[6, 7])
        dispatch.enqueue_evaluation(9)
        dispatch.enqueue_removal([str(tmp_path / "x")])  # not a stage
        view = broker_state.inspect(s)
        assert view.stage_ids == {5, 6, 7, 9} and view.redeclared == []
        broker_state.ping(s)
        shutil.rmtree(s.broker_dir)
        ensure_layout(s)
        view = broker_state.inspect(s)
        assert view.stage_ids == set() and sorted(view.redeclared) == ["default", "train"]
        dispatch.enqueue_evaluation(10)
        assert broker_state.inspect(s).stage_ids == {10}
        assert broker_state.stage_ids_of({"body": "not json", "headers": {"task": "sikd.evaluate"}}) == set()
        shutil.rmtree(s.broker_dir)  # gone for good: the ping says so
        with pytest.raises(OSError):
            broker_state.ping(s)
    finally:
        set_settings(None)
        configure(Settings())

"""Reuse between the CLI's folders and the service, both ways, by content keys: the same files give the same
stage and score keys whether a folder or an upload holds them. The service's worker links finished stages and
scores from the operator's ``reuse_folders`` (SIKD_REUSE_FOLDERS); ``sikd run --reuse-from DIR`` links them from
the service's storage. Tiny phantoms, one epoch, the worker's task functions (as test_reuse.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from sikd_core.cli import main
from sikd_core.data import generate_phantoms
from tests.service_helpers import drain, tiny_spec

pytestmark = pytest.mark.timeout(300)

FAST = dict(epochs=1, feature_maps=0, save_predictions=False, network_kwargs={"widths": [4, 8]})


@pytest.fixture
def folders(tmp_path):
    """The same SYNTHETIC files as the ``phantom_zips`` uploads (same generator, same arguments), as folders."""
    root = tmp_path / "data"
    return {d: generate_phantoms(root / d, domain=d, n=n, seed=seed, size=32)
            for d, n, seed in (("vendor_a", 16, 1), ("vendor_b", 6, 2))}


def cli_run(tmp_path, folders, out, *extra, **kw):
    spec = tiny_spec({"vendor_a": str(folders["vendor_a"]), "vendor_b": str(folders["vendor_b"])}, **{**FAST, **kw})
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


def stages(client, headers, eid):
    return {s["kind"]: s for s in client.get(f"/experiments/{eid}", headers=headers).json()["stages"]}


def test_the_worker_reuses_stages_and_scores_of_cli_folders(client, alice, datasets, jobs, settings, folders,
                                                           tmp_path, monkeypatch):
    runs = tmp_path / "cli_runs"
    report = cli_run(tmp_path, folders, runs / "a", name="on the command line")
    monkeypatch.setattr(settings, "reuse_folders", [runs])  # SIKD_REUSE_FOLDERS=<runs>
    r = client.post("/experiments", json=tiny_spec(datasets, name="in the service", **FAST), headers=alice)
    eid = r.json()["id"]
    assert [out for _, _, out in drain(jobs)] == ["succeeded"] * 4
    st = stages(client, alice, eid)
    for kind in ("baseline", "teacher", "student"):
        assert st[kind]["message"] == f"reused from {runs / 'a'}" and st[kind]["reused_from"] is None
    assert st["evaluation"]["message"] == f"evaluation reused from {runs / 'a'}"
    mine = settings.storage_dir / "experiments" / str(eid)
    assert (mine / "seed_0/student/model.pt").samefile(runs / "a/seed_0/student/model.pt")
    metrics = {m["kind"]: m["epochs"] for m in client.get(f"/experiments/{eid}/metrics", headers=alice).json()["data"]}
    assert [e["epoch"] for e in metrics["baseline"]] == [1]  # the curve, from the folder's record
    rows = client.get(f"/experiments/{eid}/results", headers=alice).json()["data"]
    assert [(r["method"], r["dataset"], r["dice"]) for r in rows] == [
        (r["method"], r["dataset"], r["dice"]) for r in report["rows"]]


def test_the_cli_reuses_stages_and_scores_of_the_service_storage(client, alice, datasets, jobs, settings, folders,
                                                                tmp_path):
    r = client.post("/experiments", json=tiny_spec(datasets, name="in the service", **FAST), headers=alice)
    eid = r.json()["id"]
    drain(jobs)
    served = settings.storage_dir / "experiments" / str(eid)
    out = tmp_path / "cli_runs" / "b"
    report = cli_run(tmp_path, folders, out, "--reuse-from", str(settings.storage_dir), alpha=0.5)
    done = {k: json.loads((out / f"seed_0/{k}/done.json").read_text()) for k in ("baseline", "teacher", "student")}
    assert done["baseline"]["reused_from"] == {"folder": str(served)} == done["teacher"]["reused_from"]
    assert "reused_from" not in done["student"]  # alpha differs: trained here
    assert (out / "seed_0/baseline/model.pt").samefile(served / "seed_0/baseline/model.pt")
    assert sorted((x["method"], x["split"]) for x in report["reused_scores"]) == [
        ("baseline", "cross"), ("baseline", "intra")]
    assert all(x["reused_from"] == {"folder": str(served)} for x in report["reused_scores"])
    theirs = client.get(f"/experiments/{eid}/results", headers=alice).json()["data"]
    assert [(x["dataset"], x["dice"]) for x in report["rows"] if x["method"] == "baseline"] == [
        (x["dataset"], x["dice"]) for x in theirs if x["method"] == "baseline"]


def test_a_reuse_folder_that_is_not_a_folder_is_refused(tmp_path, folders, capsys):
    from sikd_service.config import Settings

    with pytest.raises(ValueError, match="reuse_folders: not a folder: .*nowhere"):
        Settings(storage_dir=tmp_path, reuse_folders=str(tmp_path / "nowhere"))
    got = Settings(storage_dir=tmp_path, reuse_folders=f"{tmp_path}:{tmp_path / '.'}")
    assert got.reuse_folders == [tmp_path, tmp_path]
    assert Settings(storage_dir=tmp_path, reuse_folders=f'["{tmp_path}"]').reuse_folders == [tmp_path]
    spec = tmp_path / "x.yaml"
    spec.write_text(yaml.safe_dump({"train_dataset": str(folders["vendor_a"]), "epochs": 1}))
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--reuse-from", str(tmp_path / "nowhere")]) != 0
    assert f"--reuse-from {tmp_path / 'nowhere'}: not a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written

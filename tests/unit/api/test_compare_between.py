"""The paired test between two experiments' models (``GET /experiments/{id}/compare/{other}``) on real per-case
scores: three tiny experiments trained by the worker's task functions in-process, once for the module.

* ``a``: baseline + SIKD on vendor_a (test split: intra), vendor_b cross;
* ``b``: a baseline alone, on the same data with another learning rate and one epoch;
* ``c``: a baseline trained on vendor_b, vendor_a cross: the two experiments see each dataset the other way.

The comparison is the report's own machinery, so comparing two models of ONE experiment must give exactly the
report's comparisons; between experiments the differences are checked against the per-case scores each
experiment serves. SQLite only: nothing here depends on the database backend (the files are compared).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.service_helpers import ADMIN_TOKEN, drain, new_user, tiny_spec, upload
from tests.unit.conftest import module_service

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow(seconds=15)]  # three tiny trainings


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> Iterator[str]:
    from sikd_service.config import Settings
    from sikd_service.db import dispose_engines, upgrade_database

    url = f"sqlite:///{tmp_path_factory.mktemp('between') / 'sikd.db'}"
    upgrade_database(Settings(database_url=url, storage_dir=tmp_path_factory.mktemp("migrate")))
    yield url
    dispose_engines()


@pytest.fixture(scope="module")
def trained(database_url, tmp_path_factory, phantom_zips) -> Iterator[dict[str, Any]]:
    with module_service(database_url, tmp_path_factory.mktemp("between") / "storage") as (_, client, jobs):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        alice = new_user(client, admin, "alice")
        ds = {d: upload(client, alice, data, name=d).json()["id"] for d, data in phantom_zips.items()}
        exps = {}
        for key, spec in (("a", tiny_spec(ds, name="a")),
                          ("b", tiny_spec(ds, name="b", methods=["baseline"], epochs=1, lr=2e-2)),
                          ("c", tiny_spec(ds, name="c", methods=["baseline"], epochs=1,
                                          train_dataset=ds["vendor_b"], eval_datasets=[ds["vendor_a"]]))):
            r = client.post("/experiments", json=spec, headers=alice)
            assert r.status_code == 201, r.text
            exps[key] = r.json()["id"]
            assert set(out for _, _, out in drain(jobs)) == {"succeeded"}
        yield {"client": client, "alice": alice, "admin": admin, "exps": exps, "jobs": jobs, "datasets": ds}


def compare(t: dict, a: int, method: str, b: int, other: str, status: int = 200, who: str = "alice") -> Any:
    r = t["client"].get(f"/experiments/{a}/compare/{b}", params={"method": method, "other_method": other},
                        headers=t[who])
    assert r.status_code == status, r.text
    return r.json()


def per_case(t: dict, exp_id: int, method: str) -> dict[tuple[str, str], tuple[float, str]]:
    """``(dataset, case) -> (Dice mean over seeds, split)`` as the experiment's /cases serves them."""
    got: dict[tuple[str, str], list[float]] = defaultdict(list)
    split = {}
    for c in t["client"].get(f"/experiments/{exp_id}/cases", params={"method": method, "limit": 500},
                             headers=t["alice"]).json()["data"]:
        got[(c["dataset"], c["case"])].append(c["dice"])
        split[(c["dataset"], c["case"])] = c["split"]
    return {k: (float(np.mean(v)), split[k]) for k, v in got.items()}


def test_two_models_of_one_experiment_give_the_reports_own_comparisons(trained):
    a = trained["exps"]["a"]
    out = compare(trained, a, "sikd", a, "baseline")
    report = trained["client"].get(f"/experiments/{a}/results", headers=trained["alice"]).json()["comparisons"]
    assert len(out["comparisons"]) == len(report) == 2
    for mine, theirs in zip(out["comparisons"], report, strict=True):
        assert (mine["dataset"], mine["split"], mine["n_cases"]) == (theirs["dataset"], theirs["split"],
                                                                      theirs["n_cases"])
        assert (mine["a"], mine["b"]) == (f"#{a} sikd", f"#{a} baseline")
        for m in ("dice", "hd95"):
            for k in ("mean_diff", "median_diff", "ci_low", "ci_high", "p_value", "p_holm", "better", "worse", "ties"):
                assert mine[m][k] == pytest.approx(theirs[m][k], nan_ok=True), (m, k)
    assert out["shared_cases"] == sum(c["n_cases"] for c in report) and out["only_a"] == out["only_b"] == 0


def test_models_of_two_experiments_are_paired_on_their_shared_images(trained):
    a, b = trained["exps"]["a"], trained["exps"]["b"]
    out = compare(trained, a, "sikd", b, "baseline")
    mine, theirs = per_case(trained, a, "sikd"), per_case(trained, b, "baseline")
    assert set(mine) == set(theirs) and out["shared_cases"] == len(mine)  # same data, same split
    assert [d["name"] for d in out["datasets"]] == ["vendor_a", "vendor_b"]
    for c in out["comparisons"]:
        keys = [k for k in mine if k[0] == c["dataset"]]
        diffs = [mine[k][0] - theirs[k][0] for k in keys]
        assert c["n_cases"] == len(keys) and c["split"] == mine[keys[0]][1] == c["split_a"] == c["split_b"]
        assert c["dice"]["mean_diff"] == pytest.approx(np.mean(diffs))
        assert c["dice"]["better"] == sum(d > 0 for d in diffs) and c["dice"]["worse"] == sum(d < 0 for d in diffs)
        assert c["dice"]["ci_low"] <= c["dice"]["mean_diff"] <= c["dice"]["ci_high"]
        assert 0 <= c["dice"]["p_value"] <= c["dice"]["p_holm"] <= 1
    assert out["seeds_a"] == out["seeds_b"] == [0]
    assert np.mean([c["dice"]["mean_diff"] for c in out["comparisons"]]) != 0  # two different models
    # the other way round: the opposite differences
    back = compare(trained, b, "baseline", a, "sikd")
    for x, y in zip(out["comparisons"], back["comparisons"], strict=True):
        assert y["dice"]["mean_diff"] == pytest.approx(-x["dice"]["mean_diff"])
        assert y["dice"]["p_value"] == pytest.approx(x["dice"]["p_value"])
    # each side's health, as the experiment itself reports it
    for side, exp_id in (("a", a), ("b", b)):
        health = trained["client"].get(f"/experiments/{exp_id}", headers=trained["alice"]).json()["health"]
        assert out[side]["experiment_health"] == health["status"]
        assert out[side]["experiment_id"] == exp_id


def test_a_dataset_seen_intra_by_one_and_cross_by_the_other_is_compared_on_the_common_cases(trained):
    a, c = trained["exps"]["a"], trained["exps"]["c"]
    out = compare(trained, a, "baseline", c, "baseline")
    mine, theirs = per_case(trained, a, "baseline"), per_case(trained, c, "baseline")
    common = set(mine) & set(theirs)
    assert out["shared_cases"] == len(common) < min(len(mine), len(theirs))
    assert out["only_a"] == len(set(mine) - common) and out["only_b"] == len(set(theirs) - common)
    by_set = {x["dataset"]: x for x in out["comparisons"]}
    assert by_set["vendor_a"]["split"] == "intra vs cross" and by_set["vendor_b"]["split"] == "cross vs intra"
    for name, x in by_set.items():
        keys = [k for k in common if k[0] == name]
        assert x["n_cases"] == len(keys) > 0
        assert x["dice"]["mean_diff"] == pytest.approx(np.mean([mine[k][0] - theirs[k][0] for k in keys]))


def test_without_models_the_headline_models_are_compared(trained):
    client, alice, (a, b) = trained["client"], trained["alice"], (trained["exps"]["a"], trained["exps"]["b"])
    out = client.get(f"/experiments/{a}/compare/{b}", headers=alice).json()
    assert (out["a"]["method"], out["b"]["method"]) == ("sikd", "baseline")  # b trained no SIKD student
    out = client.get(f"/experiments/{a}/compare/{a}", headers=alice).json()
    assert (out["a"]["method"], out["b"]["method"]) == ("sikd", "baseline")  # within one: another model
    out = client.get(f"/experiments/{b}/compare/{trained['exps']['c']}", headers=alice).json()
    assert (out["a"]["method"], out["b"]["method"]) == ("baseline", "baseline")  # the same method when both have it


def test_bad_comparisons_are_refused_in_words(trained):
    client, alice, exps = trained["client"], trained["alice"], trained["exps"]
    a, b = exps["a"], exps["b"]
    r = compare(trained, a, "gin", b, "baseline", status=422)
    assert "has no model 'gin'" in r["detail"] and "baseline, sikd" in r["detail"]
    assert "has no model 'sikd'" in compare(trained, a, "sikd", b, "sikd", status=422)["detail"]
    assert "with itself" in compare(trained, a, "sikd", a, "sikd", status=422)["detail"]
    assert "method" in compare(trained, a, "<x>", b, "baseline", status=422)["detail"]
    r = client.get(f"/experiments/{a}/compare/{b}", params={"other_method": "a b"}, headers=alice)
    assert r.status_code == 422 and "other_method" in r.json()["detail"]
    assert "not found" in compare(trained, a, "sikd", 999999, "baseline", status=404)["detail"]
    bob = new_user(client, trained["admin"], "bob")
    r = client.get(f"/experiments/{a}/compare/{b}", params={"method": "sikd", "other_method": "baseline"},
                   headers=bob)
    assert r.status_code == 404  # not his
    queued = client.post("/experiments", json=tiny_spec(trained["datasets"], name="waiting"), headers=alice).json()
    trained["jobs"].clear()  # never run: it stays queued
    assert "exist once it has succeeded" in compare(trained, a, "sikd", queued["id"], "baseline", status=409)["detail"]

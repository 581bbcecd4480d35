"""Baseline strength on the dashboard: the experiment page's banner (a weakened baseline below the reference
recipe; a run without a reference says nothing measured it) and the Compare page's table. Really trained
on the service's worker (SYNTHETIC phantoms, tiny networks)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, texts
from tests.ui.stack import tiny_spec

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def strength(services, zips) -> dict[str, Any]:
    api = services.work.admin.new_user("strength")
    ids = {name: api.upload(data, name)["id"] for name, data in zips.items()}
    common = dict(epochs=6, steps_per_epoch=4, feature_maps=0, save_predictions=False)
    weak = api.post("/experiments", json=tiny_spec(ids["vendor_a"], [ids["vendor_b"]], name="weak baseline",
                                                   methods=["baseline", "reference"], lr=1e-7, **common))["id"]
    plain = api.post("/experiments", json=tiny_spec(ids["vendor_a"], [ids["vendor_b"]], name="no reference",
                                                    methods=["baseline"], **common))["id"]
    for i in (weak, plain):
        api.wait_experiment(i, timeout=240)
    return {"api": api, "weak": weak, "plain": plain}


def test_experiment_page_warns_when_the_baseline_trails_the_reference(dashboard, services, strength):
    api = strength["api"]
    res = api.get(f"/experiments/{strength['weak']}/results")
    assert any(e["below_reference"] for e in res["baseline_strength"])
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(strength["weak"])})
    no_exceptions(at)
    warnings = "\n".join(texts(at, "warning"))
    assert "**The baseline trails the reference recipe**" in warnings and "vendor_a (intra)" in warnings
    # the baseline model's health banner names the finding (an error banner: this tiny baseline also collapsed)
    banners = "\n".join(texts(at, "warning") + texts(at, "error"))
    assert "Baseline (seed 0) is unhealthy" in banners and "baseline below the reference recipe" in banners


def test_experiment_page_says_when_nothing_measured_the_baseline(dashboard, services, strength):
    api = strength["api"]
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(strength["plain"])})
    no_exceptions(at)
    assert "**Baseline strength not measured**" in "\n".join(texts(at, "info"))


def test_compare_page_shows_each_experiments_baseline_strength(dashboard, services, strength):
    api = strength["api"]
    at = dashboard("compare", url=services.work.url, token=api.token,
                   query={"ids": f"{strength['weak']},{strength['plain']}"})
    no_exceptions(at)
    assert "Baseline strength" in all_text(at)
    table = next(d.value for d in at.dataframe if "Verdict" in d.value.columns)
    verdicts = dict(zip(table["Experiment"], table["Verdict"], strict=True))
    weak_rows = table[table["Experiment"].str.startswith(f"#{strength['weak']} ")]
    assert "⚠ baseline below the reference" in set(weak_rows["Verdict"])
    assert verdicts[f"#{strength['plain']} no reference"] == "not measured (no reference trained)"

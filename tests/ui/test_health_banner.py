"""Training-health banners: one per unhealthy model, at the top of the experiment page above the scores (never in
an expander). A degenerate run (lr 1 on SYNTHETIC phantoms: every pixel one class) really trained by the worker,
and health_banner itself on constructed findings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, texts
from tests.ui.stack import tiny_spec

pytestmark = pytest.mark.timeout(300)


def in_order(node: Any) -> list[tuple[str, str]]:
    """Every element of the page, depth first in display order, as ``(type, text)``."""
    out: list[tuple[str, str]] = []
    children = getattr(node, "children", None)
    if children:
        for k in sorted(children):
            out += in_order(children[k])
    else:
        out.append((getattr(node, "type", ""), str(getattr(node, "value", ""))))
    return out


def test_degenerate_run_shows_banners_above_the_scores(dashboard, services, zips):
    api = services.work.admin.new_user("health")
    train = api.upload(zips["vendor_a"], "vendor_a")["id"]
    cross = api.upload(zips["vendor_b"], "vendor_b")["id"]
    spec = tiny_spec(train, [cross], name="degenerate", lr=1.0, epochs=2, steps_per_epoch=2, augment=False,
                     student_head_init="random",  # the student collapses to one class everywhere
                     feature_maps=0, network_kwargs={"widths": [4, 8]})
    exp_id = api.post("/experiments", json=spec)["id"]
    api.wait_experiment(exp_id, timeout=240)
    health = api.get(f"/experiments/{exp_id}/results")["health"]
    assert health["status"] == "unhealthy"
    at = dashboard("experiment", url=services.work.url, token=api.token, query={"id": str(exp_id)})
    no_exceptions(at)
    banners = [t for t in texts(at, "error") if "is unhealthy" in t]
    assert len(banners) == 2  # baseline and SIKD student, each with an error-severity finding
    assert any(b.startswith("**Baseline (seed 0) is unhealthy**") for b in banners)
    sikd = next(b for b in banners if b.startswith("**SIKD student (seed 0) is unhealthy**"))
    assert "collapsed predictions" in sikd and "teacher did not learn" in sikd and "no better than a trivial predictor" in sikd
    order = in_order(at.main)
    first_banner = next(i for i, (_, v) in enumerate(order) if "is unhealthy" in v)
    scores = next(i for i, (t, v) in enumerate(order) if "sikd-scores" in v)
    results = next(i for i, (_, v) in enumerate(order) if v == "Results")
    assert first_banner < results < scores
    assert not any("is unhealthy" in e.label for e in at.expander)
    assert any("involves unhealthy models" in w for w in texts(at, "warning"))  # the marked comparisons
    assert "succeeded with warnings" in all_text(at)  # the header's status badge

    # the list and the Models page read the same health: no "ok" / plain "succeeded" for these models
    at = dashboard("experiments", url=services.work.url, token=api.token)
    no_exceptions(at)
    row = at.dataframe[0].value.set_index("ID").loc[exp_id]
    assert row["Status"] == "succeeded with warnings"
    assert row["Health"] == "⚠ Baseline (seed 0), SIKD student (seed 0)" and row["Headline model"] == "SIKD student"
    at = dashboard("models", url=services.work.url, token=api.token, timeout=60)
    no_exceptions(at)
    table = at.dataframe[0].value
    assert len(table) == 2 and all(h.startswith("⚠ unhealthy: ") for h in table["health"])
    card = all_text(at)
    assert "Health: unhealthy" in card and '{"status"' not in card and "no training warnings" not in card


def test_health_banner_per_model_and_severity():
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        from ui.health import health_banner

        def finding(code: str, severity: str, method: str, seed: int, stage: str) -> dict:
            return {"code": code, "severity": severity, "stage": stage, "seed": seed, "method": method,
                    "epoch": 3, "message": f"{stage} {code}", "values": {}}

        teacher = finding("collapsed_prediction", "error", "sikd", 0, "teacher")
        chance = finding("cross_at_chance", "warning", "baseline", 1, "baseline")
        # the API's health: which model each finding is about (the students carry their teacher's) is its answer
        health = {"status": "unhealthy", "models": {"baseline/0": "healthy", "sikd/0": "unhealthy",
                                                    "baseline/1": "unhealthy", "sikd/1": "healthy",
                                                    "gin+sikd/0": "unhealthy"},
                  "findings": [teacher, chance],
                  "by_model": {"baseline/0": [], "sikd/0": [teacher], "baseline/1": [chance], "sikd/1": [],
                               "gin+sikd/0": [teacher]}}
        health_banner(health)
        # while training: the stages' findings so far, in the same shape
        early = finding("exploding_loss", "warning", "sikd", 2, "student")
        health_banner({"status": "unhealthy", "findings": [early], "models": {"sikd/2": "unhealthy"},
                       "by_model": {"sikd/2": [early]}})
        health_banner({"status": "healthy", "findings": [], "models": {"sikd/0": "healthy"},
                       "by_model": {"sikd/0": []}})
        # a finding about none of the models, of a code the dashboard has no label for, still shows
        loose = {**finding("a_check_added_later", "warning", None, 0, "evaluation"), "epoch": None}
        health_banner({"status": "unhealthy", "findings": [loose], "models": {"sikd/0": "healthy"},
                       "by_model": {"sikd/0": []}, "other": [loose]})

    at = AppTest.from_function(page).run()
    no_exceptions(at)
    assert [e.value.split("**")[1] for e in at.error] == ["gin+sikd (seed 0) is unhealthy",
                                                           "SIKD student (seed 0) is unhealthy"]
    assert all("**collapsed predictions** (teacher, epoch 3)" in e.value for e in at.error)
    assert [w.value.split("**")[1] for w in at.warning] == ["Baseline (seed 1) is unhealthy",
                                                             "SIKD student (seed 2) is unhealthy",
                                                             "Training-health findings about no single model:"]
    assert "**a_check_added_later** (evaluation): evaluation a_check_added_later" in at.warning[2].value
    assert not at.expander

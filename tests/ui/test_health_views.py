"""Health on every surface, from the one ``health`` object the API gives each experiment: the Experiments list
(display status "succeeded with warnings", a Health column, whose Dice the headline is), the Models table and
the model card's text; a stage of a cancelled experiment that still runs shows as stopping, without an ETA.
Pure functions on API-shaped dicts (no API needed); the pages that show them are driven in test_health_banner."""

from __future__ import annotations

from ui.experiments_data import experiments_frame, stages_frame
from ui.health import card_health_markdown, display_status, experiment_health_summary, health_summary
from ui.models_data import models_frame

TEACHER = {"code": "teacher_not_learned", "severity": "warning", "stage": "teacher", "seed": 0, "method": "sikd",
           "epoch": 3, "message": "teacher: best validation Dice 0.210", "values": {}}
FUTURE = {"code": "a_check_added_later", "severity": "warning", "stage": "gin", "seed": 0, "method": "gin",
          "epoch": None, "message": "something new", "values": {}}


def experiment(eid: int, status: str, by_model: dict[str, list[dict]], **kw) -> dict:
    findings = [f for v in by_model.values() for f in v]
    return {"id": eid, "name": f"exp {eid}", "status": status, "progress": 1.0, "spec": {"network": "unet", "epochs": 2},
            "created_at": "2026-01-01T00:00:00Z", "stages": kw.pop("stages", []),
            "plan": [{"stage": "baseline", "seed": 0, "role": "plain", "method": "baseline", "epochs": 2},
                     {"stage": "teacher", "seed": 0, "role": "teacher", "method": None, "epochs": 2},
                     {"stage": "gin+sikd", "seed": 0, "role": "student", "method": "gin+sikd", "epochs": 2}],
            "summary": {"dice": {"baseline": {"intra": 0.7, "cross": 0.5}, "gin+sikd": {"intra": 0.8, "cross": 0.6}}},
            "health": {"status": "unhealthy" if findings else "healthy", "findings": findings,
                       "models": {k: "unhealthy" if v else "healthy" for k, v in by_model.items()},
                       "by_model": by_model}, **kw}


def test_the_list_says_succeeded_with_warnings_names_the_unhealthy_models_and_whose_dice_it_shows():
    bad = experiment(1, "succeeded", {"baseline/0": [], "gin+sikd/0": [TEACHER], "gin/0": [FUTURE]})
    good = experiment(2, "succeeded", {"baseline/0": [], "gin+sikd/0": []})
    frame = experiments_frame([bad, good]).set_index("ID")
    assert frame.loc[1, "Status"] == "succeeded with warnings" and frame.loc[2, "Status"] == "succeeded"
    assert frame.loc[1, "Health"] == "⚠ gin+sikd (seed 0), gin (seed 0)" and frame.loc[2, "Health"] == "healthy"
    assert frame.loc[1, "Headline model"] == "GIN+SIKD student"
    assert list(frame.columns).index("Headline model") < list(frame.columns).index("Dice intra")
    # the stored vocabulary stays: a failed or running experiment keeps its status
    assert display_status(experiment(3, "failed", {"sikd/0": [TEACHER]})) == "failed"
    assert experiment_health_summary(experiment(4, "running", {})) == "–"
    # a finding about none of the models (the API's "other") still makes it "with warnings"
    odd = experiment(6, "succeeded", {"baseline/0": []})
    odd["health"]["other"] = [{**FUTURE, "method": None, "stage": "evaluation"}]
    assert display_status(odd) == "succeeded with warnings" and experiment_health_summary(odd) == "⚠ 1 other finding"


def test_models_table_reads_the_experiments_health():
    exp = experiment(1, "succeeded", {"baseline/0": [], "gin+sikd/0": [TEACHER, FUTURE]})
    models = [{"id": 10, "name": "b", "experiment_id": 1, "method": "baseline", "seed": 0, "architecture": "unet",
               "stage_id": 5},
              {"id": 11, "name": "s", "experiment_id": 1, "method": "gin+sikd", "seed": 0, "architecture": "unet",
               "stage_id": 6}]
    frame = models_frame(models, {1: exp}, {})
    assert frame.loc[10, "health"] == "healthy"
    assert frame.loc[11, "health"] == "⚠ unhealthy: teacher did not learn (teacher) (+1 more)"
    assert health_summary([FUTURE]) == "⚠ unhealthy: a_check_added_later (gin)"  # an unknown code shows as it is


def test_card_health_is_text():
    card = {"health": {"status": "unhealthy", "findings": [TEACHER]}, "warnings": [TEACHER["message"], "lr lowered"]}
    text = card_health_markdown(card)
    assert text.startswith("**Health: unhealthy** (1 finding")
    assert "**teacher did not learn** (teacher, epoch 3): teacher: best validation Dice 0.210" in text
    assert text.count("best validation Dice 0.210") == 1 and "- lr lowered" in text and "{" not in text
    assert "healthy (no finding" in card_health_markdown({"health": {"status": "healthy", "findings": []}})


def test_a_cancelled_experiments_running_stage_is_stopping_without_eta():
    stage = {"kind": "student", "seed": 0, "status": "running", "progress": 0.5, "epoch": 2, "epochs": 4,
             "eta_seconds": 4.0, "started_at": "2026-01-01T00:00:00Z", "finished_at": None, "warnings": []}
    running = stages_frame([stage], "running").iloc[0]
    assert running["Status"] == "running" and running["ETA"] == "4 s"
    stopped = stages_frame([stage], "cancelled").iloc[0]
    assert stopped["Status"] == "stopping" and stopped["ETA"] == ""
    row = experiments_frame([experiment(5, "cancelled", {}, stages=[stage], error="cancelled by the user")]).iloc[0]
    assert row["Now"] == "cancelled by the user" and row["ETA"] == ""

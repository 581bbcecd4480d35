"""Finding experiments again in the dashboard: tags in the Experiments list and its filters, the tags and note
editor on an experiment's page, "Clone and edit" (the New experiment form filled with a spec, sent as a new
experiment), and the Compare page's paired test between two experiments' models with their health."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, texts
from tests.ui.stack import tiny_spec
from ui.formatting import fmt, fmt_p

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def shown_ids(at) -> list[int]:
    return at.dataframe[0].value["ID"].tolist()


def test_the_list_shows_tags_and_filters_by_name_tag_dataset_network_method_and_health(dashboard, services,
                                                                                       queue_user, queue_data):
    a, b = queue_data["vendor_a"], queue_data["vendor_b"]
    e1 = queue_user.post("/experiments", json=tiny_spec(a, [b], name="alpha one"))["id"]
    e2 = queue_user.post("/experiments", json=tiny_spec(b, [], name="Alpha two", methods=["baseline"],
                                                        network="attention_unet", network_kwargs={}))["id"]
    e3 = queue_user.post("/experiments", json=tiny_spec(a, [], name="other", methods=["baseline", "gin"]))["id"]
    queue_user.call("PATCH", f"/experiments/{e1}", json={"tags": ["sweep", "fig8"]})
    queue_user.call("PATCH", f"/experiments/{e2}", json={"tags": ["sweep"]})
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    df = at.dataframe[0].value.set_index("ID")
    assert [list(df.loc[i, "Tags"]) for i in (e1, e2, e3)] == [["sweep", "fig8"], ["sweep"], []]
    assert shown_ids(at) == [e3, e2, e1]
    assert at.multiselect(key="exp_f_tags").options == ["sweep", "fig8"]  # most used first
    at.text_input(key="exp_f_name").input("alpha").run()
    assert shown_ids(at) == [e2, e1]
    at.multiselect(key="exp_f_tags").select("fig8").run()
    assert shown_ids(at) == [e1]
    at.text_input(key="exp_f_name").input("").run()
    at.multiselect(key="exp_f_tags").unselect("fig8").run()
    at.selectbox(key="exp_f_dataset").select(b).run()
    assert shown_ids(at) == [e2, e1]
    at.selectbox(key="exp_f_network").select("attention_unet").run()
    assert shown_ids(at) == [e2]
    at.selectbox(key="exp_f_network").select("any").run()
    at.selectbox(key="exp_f_dataset").select("any").run()
    at.selectbox(key="exp_f_method").select("gin").run()
    assert shown_ids(at) == [e3]
    at.selectbox(key="exp_f_method").select("any").run()
    at.selectbox(key="exp_f_health").select("unhealthy").run()
    no_exceptions(at)
    assert "No experiments match these filters." in texts(at, "info")
    at.selectbox(key="exp_f_health").select("healthy").run()
    assert shown_ids(at) == [e3, e2, e1]


def test_tags_and_note_are_edited_on_the_experiment_page(dashboard, services, queue_user, queue_data):
    e = queue_user.post("/experiments", json=tiny_spec(queue_data["vendor_a"], [], name="to tag"))["id"]
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token, query={"id": str(e)})
    no_exceptions(at)
    at.text_input(key=f"meta_tags_{e}").input("sweep, polyp ,, sweep")
    at.text_area(key=f"meta_note_{e}").input("the alpha 0.5 run")
    [save] = [b for b in at.button if b.label == "Save tags and note"]
    at = save.click().run()
    no_exceptions(at)
    got = queue_user.get(f"/experiments/{e}")
    assert got["tags"] == ["sweep", "polyp"] and got["note"] == "the alpha 0.5 run"
    assert ":blue-badge[sweep] :blue-badge[polyp]" in texts(at, "markdown")
    assert "the alpha 0.5 run" in texts(at, "info")
    # a bad tag: the API's message under the form, nothing stored changes
    at.text_input(key=f"meta_tags_{e}").input("fine, <b>bold</b>")
    [save] = [b for b in at.button if b.label == "Save tags and note"]
    at = save.click().run()
    no_exceptions(at)
    assert any("not allowed" in t and "<" in t for t in texts(at, "error")), texts(at, "error")
    assert queue_user.get(f"/experiments/{e}")["tags"] == ["sweep", "polyp"]


def test_clone_and_edit_fills_the_form_with_the_spec_and_starts_a_new_experiment(dashboard, services, queue_user,
                                                                                  queue_data):
    a, c = queue_data["vendor_a"], queue_data["vendor_c"]
    spec = tiny_spec(a, [c], name="original", image_size=[32, 48], epochs=3, teacher_epochs=2, batch_size=2,
                     lr=2e-3, weight_decay=1e-4, seeds=[1, 4], methods=["baseline", "sikd", "gin"], alpha=0.5,
                     teacher_input="label_map", student_head_init="random", teacher_skip_connections=True,
                     loss="ce", recipe="paper", augment=True, augmentation="nnunet", val_fraction=0.15, test_fraction=0.25, split_seed=7,
                     mask_mode="label", steps_per_epoch=5, amp=False, save_predictions=False, feature_maps=0,
                     on_unhealthy="stop", network_kwargs={"widths": [4, 8]})
    original = queue_user.post("/experiments", json=spec)
    at = dashboard("experiment", url=services.queue.url, token=queue_user.token, query={"id": str(original["id"])})
    at.button(key="detail_clone").click().run()
    no_exceptions(at)
    assert at.query_params["clone"] == str(original["id"]) and [t.value for t in at.title] == ["New experiment"]
    assert any(f"Filled from experiment **#{original['id']} original**" in t for t in texts(at, "info"))
    # the page as its address opens it (AppTest reruns the page it was opened on, so open the form itself)
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token,
                   query={"clone": str(original["id"])})
    no_exceptions(at)
    # every field of the form holds the original's value
    assert at.multiselect(key="ne_train").value == [a] and at.multiselect(key="ne_cross").value == [c]
    assert at.text_input(key="ne_name").value == "original (clone)"
    assert (at.number_input(key="ne_h").value, at.number_input(key="ne_w").value) == (32, 48)
    values = {k: at.number_input(key=k).value for k in ("ne_epochs", "ne_tepochs", "ne_batch", "ne_lr", "ne_wd",
                                                         "ne_alpha", "ne_val", "ne_test", "ne_split", "ne_steps",
                                                         "ne_feat")}
    assert values == {"ne_epochs": 3, "ne_tepochs": 2, "ne_batch": 2, "ne_lr": 2e-3, "ne_wd": 1e-4, "ne_alpha": 0.5,
                      "ne_val": 0.15, "ne_test": 0.25, "ne_split": 7, "ne_steps": 5, "ne_feat": 0}
    assert at.text_input(key="ne_seeds").value == "1, 4"
    assert at.multiselect(key="ne_methods").value == ["baseline", "sikd", "gin"]
    assert at.selectbox(key="ne_tin").value == "label_map" and at.selectbox(key="ne_head").value == "random"
    assert at.selectbox(key="ne_loss").value == "ce" and at.selectbox(key="ne_mask").value == "label"
    assert at.selectbox(key="ne_unhealthy").value == "stop" and at.text_input(key="ne_device").value == "cpu"
    assert [at.checkbox(key=k).value for k in ("ne_aug", "ne_amp", "ne_save", "ne_skips")] == [True, False, False,
                                                                                               True]
    assert at.selectbox(key="ne_augkind").value == "nnunet"
    assert at.text_area(key="ne_kwargs").value == '{"widths": [4, 8]}'
    # edit one setting and start it: a new experiment, the same spec but for the name and that setting
    at.number_input(key="ne_alpha").set_value(4.0)
    [start] = [x for x in at.main.button if x.label == "Start experiment"]
    at = start.click().run()
    no_exceptions(at)
    exps = queue_user.get("/experiments")["data"]
    assert len(exps) == 2, texts(at, "error")
    new = exps[0]
    assert [t.value for t in at.title] == [f"#{new['id']} original (clone)"]
    assert new["spec"] == {**original["spec"], "name": "original (clone)", "alpha": 4.0}
    assert queue_user.get(f"/experiments/{original['id']}")["spec"] == original["spec"]  # the original unchanged


def test_compare_tests_two_experiments_models_paired_with_their_health(dashboard, services, trained):
    api, (a1, a2) = trained["api"], trained["sweep"]
    at = dashboard("compare", url=services.work.url, token=api.token)
    no_exceptions(at)
    assert at.selectbox(key="cmp_pair_a").value == a1 and at.selectbox(key="cmp_pair_b").value == a2
    assert at.selectbox(key=f"cmp_pair_ma_{a1}").value == "sikd" == at.selectbox(key=f"cmp_pair_mb_{a2}").value
    out = api.get(f"/experiments/{a1}/compare/{a2}", params={"method": "sikd", "other_method": "sikd"})
    [html] = [m.value for m in at.markdown if "class='sikd-between'" in m.value]
    from tests.ui.test_experiment_page import cells

    rows = cells(html)
    assert rows[0][:5] == ["Comparison", "Dataset", "Split", "Cases", "ΔDice"]
    assert len(rows) - 1 == len(out["comparisons"]) == 3  # vendor_a (intra), vendor_b and vendor_c (cross)
    for row, c in zip(rows[1:], out["comparisons"], strict=True):
        d = c["dice"]
        assert row[:5] == [f"#{a1} SIKD student − #{a2} SIKD student", c["dataset"], c["split"], str(c["n_cases"]),
                           fmt(d["mean_diff"], 3, True)]
        assert row[5] == f"[{fmt(d['ci_low'], 3, True)}, {fmt(d['ci_high'], 3, True)}]" and row[6] == fmt_p(d["p_value"])
    assert f"on {out['shared_cases']} shared case(s)" in all_text(at) and "seeds averaged: A [0, 1], B [0, 1]" in all_text(at)
    # each compared model's health, as its experiment reports it
    for exp_id in (a1, a2):
        health = api.get(f"/experiments/{exp_id}")["health"]
        bad = [k for k, v in health["by_model"].items() if v and k.startswith("sikd/")]
        said = [t for t in texts(at, "warning" if bad else "success") if t.startswith(f"**#{exp_id} SIKD student**")]
        assert len(said) == 1 and (("unhealthy" in said[0]) == bool(bad))
    # another model of B: the baseline of the other experiment
    at.selectbox(key=f"cmp_pair_mb_{a2}").select("baseline").run()
    no_exceptions(at)
    [html] = [m.value for m in at.markdown if "class='sikd-between'" in m.value]
    out = api.get(f"/experiments/{a1}/compare/{a2}", params={"method": "sikd", "other_method": "baseline"})
    assert [r[4] for r in cells(html)[1:]] == [fmt(c["dice"]["mean_diff"], 3, True) for c in out["comparisons"]]


def test_form_state_says_what_the_form_cannot_take_over():
    """A spec whose dataset, method or network went away, whose recipe the form cannot express, or with settings
    the form has no field for: the form takes the rest, names each of these, and carries the unknown settings."""
    from ui.clone import form_state

    spec = tiny_spec("3", [4, 99], name="x" * 200, methods=["baseline", "retired"], network="gone_net", loss="dice_ce",
                     recipe="paper", sweep={"alpha": [1, 2]}, teacher_epochs=None, steps_per_epoch=None)
    state, extra, notes = form_state(spec, datasets=[3, 4], method_names=["baseline", "sikd"], networks=["unet"])
    assert state["ne_train"] == [3] and state["ne_cross"] == [4] and state["ne_cross_for"] == [3]
    assert state["ne_methods"] == ["baseline"] and "ne_network" not in state
    assert state["ne_tepochs"] == 0 and state["ne_steps"] == 0  # None is the form's 0
    assert len(state["ne_name"]) <= 200 and state["ne_name"].endswith(" (clone)")
    assert extra == {"sweep": {"alpha": [1, 2]}}
    said = " | ".join(notes)
    assert "#99 no longer exist" in said and "retired" in said and "'gone_net'" in said and "'paper'" in said


def test_filter_values_become_the_lists_query():
    from ui.experiment_filters import ANY, filter_params
    from ui.experiment_meta_view import split_tags

    assert filter_params(name="  ", tags=[], dataset=ANY, network=ANY, method=ANY, health=ANY) == {}
    assert filter_params(name=" alpha ", tags=["a", "b"], dataset=3, network="unet", method="sikd",
                         health="unhealthy") == {"name": "alpha", "tag": ["a", "b"], "dataset": 3, "network": "unet",
                                                 "method": "sikd", "health": "unhealthy"}
    assert split_tags("sweep, polyp ,, fig 8,") == ["sweep", "polyp", "fig 8"]

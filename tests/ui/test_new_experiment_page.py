"""New experiment page: no datasets, the paper's defaults (from the API), validation errors shown under the
fields they concern, and a submission that opens the experiment's page."""

from __future__ import annotations

import json
import re

import pytest

from tests.service_helpers import wait_for
from tests.ui.apptest_helpers import no_exceptions, texts

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)


def submit(at):
    """Click the form's "Start experiment" and run."""
    [button] = [b for b in at.main.button if b.label == "Start experiment"]
    return button.click().run()


def form_errors(at) -> list[str]:
    return texts(at, "error")


def previous_widget_label(at, error_text: str) -> str:
    """The label of the widget rendered just before the error block containing ``error_text`` (the error
    sits right under the field it concerns)."""
    last = None
    for node in _walk(at._tree):
        if getattr(node, "type", "") in ("text_input", "number_input", "selectbox", "multiselect", "text_area",
                                          "checkbox"):
            last = node.label
        if type(node).__name__ == "Error" and error_text in str(node.value):
            return last
    raise AssertionError(f"no error containing {error_text!r}")


def _walk(node):
    yield node
    children = getattr(node, "children", None)
    if isinstance(children, dict):
        for k in sorted(children):
            yield from _walk(children[k])


def test_no_datasets_points_to_the_upload(dashboard, services, queue_user):
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    assert "No datasets yet" in "\n".join(texts(at, "info"))
    assert not at.main.button  # no form without data


def test_defaults_are_the_papers_and_mirror_the_spec(dashboard, services, queue_user, queue_data):
    options = queue_user.get("/options")
    d = options["spec_defaults"]
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    no_exceptions(at)
    # the paper: alpha 2, class-mean teacher input, baseline + SIKD, U-Net; the standard recipe's Dice + CE; and the
    # reference recipe selected by the form (not a spec default), which says why
    assert at.number_input(key="ne_alpha").value == 2.0 == d["alpha"]
    assert at.selectbox(key="ne_tin").value == "class_mean" == d["teacher_input"]
    assert at.multiselect(key="ne_methods").value == ["baseline", "sikd", "reference"]
    assert d["methods"] == ["baseline", "sikd"]
    assert any("**Reference** (selected by default)" in c.value for c in at.caption)
    assert at.selectbox(key="ne_loss").value == "dice_ce" == d["loss"] and d["recipe"] == "standard"
    # the size fields are the training dataset's plan (GET /datasets/{id}/plan), not the spec's defaults
    planned = queue_user.get(f"/datasets/{queue_data['vendor_a']}/plan", params={"measure": "false"})["spec"]
    assert at.radio(key="ne_preset").value == "plan"
    assert at.selectbox(key="ne_network").value == planned["network"] == "unet" == d["network"]
    assert at.selectbox(key="ne_network").options[0].startswith("attention_unet")  # every network of /options
    assert len(at.selectbox(key="ne_network").options) == len(options["networks"])
    assert [at.number_input(key="ne_h").value, at.number_input(key="ne_w").value] == planned["image_size"]
    assert at.number_input(key="ne_epochs").value == planned["epochs"]
    assert at.number_input(key="ne_batch").value == planned["batch_size"]
    assert at.number_input(key="ne_lr").value == planned["lr"]
    assert json.loads(at.text_area(key="ne_kwargs").value) == planned["network_kwargs"]
    assert at.text_input(key="ne_seeds").value == "0" and d["seeds"] == [0]
    assert at.number_input(key="ne_val").value == d["val_fraction"]
    assert at.number_input(key="ne_test").value == d["test_fraction"]
    assert at.text_input(key="ne_device").value == d["device"]
    assert at.number_input(key="ne_feat").value == d["feature_maps"]
    assert at.selectbox(key="ne_unhealthy").value == "warn" == d["on_unhealthy"]
    assert at.checkbox(key="ne_skips").value is d["teacher_skip_connections"] is False
    assert at.selectbox(key="ne_head").value == d["student_head_init"] == "teacher"
    # every spec field has a widget (train/eval datasets are the two pickers above the form)
    shown = {"name", "train_dataset", "eval_datasets", "network", "network_kwargs", "image_size", "epochs",
             "teacher_epochs", "batch_size", "lr", "weight_decay", "seeds", "methods", "alpha", "teacher_input",
             "teacher_skip_connections", "student_head_init", "loss", "augment", "augmentation", "val_fraction", "test_fraction",
             "split_seed", "mask_mode", "steps_per_epoch", "device", "amp", "save_predictions", "feature_maps",
             "on_unhealthy", "recipe", "reuse"}  # the loss widget sets the recipe (standard: Dice + CE; paper: CE)
    assert shown == set(options["spec_schema"]["properties"])
    # the training dataset defaults to the first; the cross datasets to every other one with its classes
    assert at.multiselect(key="ne_train").value == [queue_data["vendor_a"]]
    assert sorted(at.multiselect(key="ne_cross").value) == sorted([queue_data["vendor_b"], queue_data["vendor_c"]])
    at.multiselect(key="ne_train").unselect(queue_data["vendor_a"]).select(queue_data["vendor_b"]).run()
    assert sorted(at.multiselect(key="ne_cross").value) == sorted([queue_data["vendor_a"], queue_data["vendor_c"]])


def test_api_validation_errors_show_under_their_fields(dashboard, services, queue_user, queue_data):
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.text_input(key="ne_seeds").input("0, 0")
    at.text_input(key="ne_device").input("tpu")
    at = submit(at)
    no_exceptions(at)
    # what the API itself says about this spec
    body = {"train_dataset": str(queue_data["vendor_a"]), "seeds": [0, 0], "device": "tpu"}
    detail = queue_user.call("POST", "/experiments", expect=422, json=body)["detail"]
    assert detail.startswith("invalid experiment spec")
    seeds_msg = next(line.split(": ", 1)[1] for line in detail.splitlines() if line.strip().startswith("seeds:"))
    device_msg = next(line.split(": ", 1)[1] for line in detail.splitlines() if line.strip().startswith("device:"))
    errors = form_errors(at)
    assert seeds_msg.replace("Value error, ", "") in errors
    assert device_msg.replace("Value error, ", "") in errors
    assert previous_widget_label(at, "duplicates in [0, 0]") == "Seeds"
    assert previous_widget_label(at, "device must be auto") == "Device"
    assert any("did not accept the experiment" in e for e in errors)
    assert queue_user.get("/experiments")["count"] == 0


def test_local_errors_are_caught_before_sending(dashboard, services, queue_user, queue_data):
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.text_input(key="ne_seeds").input("0, one")
    at.text_area(key="ne_kwargs").input("{widths: [4, 8]}")
    at = submit(at)
    no_exceptions(at)
    assert previous_widget_label(at, "'one' is not a whole number") == "Seeds"
    assert previous_widget_label(at, "not valid JSON") == "Network arguments (JSON)"
    assert queue_user.get("/experiments")["count"] == 0


def test_cross_dataset_with_other_classes_is_refused_in_words(dashboard, services, queue_user, queue_data):
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    # a binary dataset (its masks have one class): a different task than the 4-class phantoms
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(4):
            img, mask = np.full((40, 40), 80, np.uint8), np.zeros((40, 40), np.uint8)
            mask[10:20, 10:20] = 255
            for folder, arr in (("images", img), ("masks", mask)):
                b = io.BytesIO()
                Image.fromarray(arr).save(b, format="PNG")
                zf.writestr(f"binary/{folder}/{i}.png", b.getvalue())
    binary = queue_user.upload(buf.getvalue(), "binary")["id"]
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.multiselect(key="ne_cross").select(binary).run()
    at = submit(at)
    no_exceptions(at)
    errors = "\n".join(form_errors(at))
    assert "cross-dataset evaluation needs the same classes" in errors and "binary" in errors
    assert queue_user.get("/experiments")["count"] == 0


def test_submit_creates_the_experiment_and_opens_its_page(dashboard, services, queue_user, queue_data):
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.text_input(key="ne_name").input("from the form")
    at.number_input(key="ne_h").set_value(32)
    at.number_input(key="ne_w").set_value(48)
    at.number_input(key="ne_epochs").set_value(2)
    at.number_input(key="ne_batch").set_value(4)
    at.text_input(key="ne_seeds").input("0, 3")
    at.number_input(key="ne_alpha").set_value(0.5)
    at.selectbox(key="ne_tin").select("label_map")
    at.number_input(key="ne_tepochs").set_value(3)
    at.text_input(key="ne_device").input("cpu")
    at.text_area(key="ne_kwargs").input('{"widths": [4, 8, 16]}')
    at.multiselect(key="ne_cross").unselect(queue_data["vendor_c"])
    at = submit(at)
    no_exceptions(at)
    exps = queue_user.get("/experiments")["data"]
    assert len(exps) == 1
    e = exps[0]
    assert [t.value for t in at.title] == [f"#{e['id']} from the form"]  # the detail page opened
    s = e["spec"]
    assert s["image_size"] == [32, 48] and s["epochs"] == 2 and s["batch_size"] == 4 and s["seeds"] == [0, 3]
    assert s["alpha"] == 0.5 and s["teacher_input"] == "label_map" and s["teacher_epochs"] == 3
    assert s["device"] == "cpu" and s["network_kwargs"] == {"widths": [4, 8, 16]}
    assert s["train_dataset"] == str(queue_data["vendor_a"]) and s["eval_datasets"] == [str(queue_data["vendor_b"])]
    assert s["methods"] == ["baseline", "sikd", "reference"] and s["steps_per_epoch"] is None
    assert s["loss"] == "dice_ce" and s["recipe"] == "standard"


def test_two_training_datasets_make_a_multi_source_spec(dashboard, services, queue_user, queue_data):
    """Several training datasets: the cross choices leave them out, the split estimate adds up the sources,
    and the spec sent holds the list."""
    a, b, c = queue_data["vendor_a"], queue_data["vendor_b"], queue_data["vendor_c"]
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.multiselect(key="ne_train").select(b).run()
    no_exceptions(at)
    assert at.multiselect(key="ne_train").value == [a, b]
    assert b not in at.multiselect(key="ne_cross").options and a not in at.multiselect(key="ne_cross").options
    assert at.multiselect(key="ne_cross").value == [c]
    plan = "\n".join(texts(at, "info"))
    # vendor_a: 20 pairs -> 14 · 2 · 4; vendor_b: 6 pairs -> 4 · 1 · 1; summed over the sources
    assert "**Splits** of vendor_a + vendor_b (26 pairs): about 18 train · 3 validation · 5 test" in plan
    assert "vendor_a: 14 · 2 · 4; vendor_b: 4 · 1 · 1" in plan and "each one's test split is an intra row" in plan
    at.text_input(key="ne_name").input("two sources")
    at.text_input(key="ne_device").input("cpu")
    at = submit(at)
    no_exceptions(at)
    [e] = queue_user.get("/experiments")["data"]
    assert [t.value for t in at.title] == [f"#{e['id']} two sources"]
    assert e["spec"]["train_dataset"] == [str(a), str(b)] and e["spec"]["eval_datasets"] == [str(c)]
    assert f"trained on #{a} vendor_a, #{b} vendor_b" in "\n".join(texts(at, "caption"))


def test_no_training_dataset_is_refused_before_sending(dashboard, services, queue_user, queue_data):
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.multiselect(key="ne_train").unselect(queue_data["vendor_a"]).run()
    no_exceptions(at)
    assert "Choose at least one training dataset." in texts(at, "error")
    at = submit(at)
    assert "choose at least one training dataset" in texts(at, "error")
    assert queue_user.get("/experiments")["count"] == 0


def test_size_preset_fills_the_form_and_is_what_is_sent(dashboard, services, queue_user, queue_data):
    quick = {p["name"]: p for p in queue_user.get("/options")["presets"]}["quick"]["values"]
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    assert at.radio(key="ne_preset").value == "plan"  # the dataset's plan first; the presets are alternatives
    assert at.radio(key="ne_preset").options == ["Planned for the dataset", "Paper (GPU)", "Quick look (CPU)"]
    assert "Planned from vendor_a (20 pairs" in "\n".join(c.value for c in at.caption)
    at = at.radio(key="ne_preset").set_value("quick").run()
    no_exceptions(at)
    assert [at.number_input(key="ne_h").value, at.number_input(key="ne_w").value] == quick["image_size"]
    assert at.number_input(key="ne_epochs").value == quick["epochs"]
    assert at.number_input(key="ne_lr").value == quick["lr"]
    assert at.text_area(key="ne_kwargs").value == '{"widths": [16, 32, 64, 128]}'
    assert "3 minutes" in "\n".join(c.value for c in at.caption)
    at.text_input(key="ne_name").input("quick one")
    at = submit(at)
    no_exceptions(at)
    [e] = [x for x in queue_user.get("/experiments")["data"] if x["name"] == "quick one"]
    s = e["spec"]
    assert s["image_size"] == quick["image_size"] and s["epochs"] == quick["epochs"] and s["lr"] == quick["lr"]
    assert s["network_kwargs"] == quick["network_kwargs"] and s["batch_size"] == quick["batch_size"]



def test_the_plan_is_the_default_and_the_estimate_is_measured(dashboard, services, trained):
    """On the stack whose worker trained the sweep: the form starts from the training dataset's plan, and the
    estimate before Start rests on the stages that ran there and on the steps its worker times for the
    configurations that never ran (not known until then: the API times nothing itself)."""
    api = trained["api"]
    at = dashboard("new_experiment", url=services.work.url, token=api.token)
    no_exceptions(at)
    assert at.radio(key="ne_preset").value == "plan"
    first = at.multiselect(key="ne_train").value[0]
    planned = api.get(f"/datasets/{first}/plan", params={"measure": "false"})["spec"]
    assert at.number_input(key="ne_epochs").value == planned["epochs"]
    assert at.number_input(key="ne_batch").value == planned["batch_size"]
    plan = "\n".join(texts(at, "info"))
    assert "**Splits** of vendor_a (20 pairs): about 14 train · 2 validation · 4 test" in plan
    pending = ("queued for timing", "being timed on", "this configuration is being timed")
    if "**Estimated run time:** not known yet" in plan or any(p in plan for p in pending):
        # the plan's network and the reference's are being timed on the worker: meanwhile no figure, or an
        # a-priori one scaled from a network that ran (labelled); wait for the worker's timing
        assert any(p in plan for p in pending), plan

        def known() -> str | None:
            text = "\n".join(texts(at.run(), "info"))
            return text if "run time:** about" in text and not any(p in text for p in pending) else None

        plan = wait_for(known, 180, 2.0, what="the worker to time the form's configurations")
    assert "**Estimated run time:** about " in plan
    assert "timed on worker" in plan, plan  # the network and the reference recipe's, timed on the stack's worker
    measured = re.search(r"from (\d+) finished stage\(s\)", plan)
    assert measured and int(measured.group(1)) >= 4, plan  # the sweep's stages

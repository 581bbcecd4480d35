"""New experiment: a value out of range is never silently ignored (its field shows the API's message, the click
on Start says so), and the estimate under the form is the API's: the experiment's stage plan, its epochs and the
measured or modelled run time."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import no_exceptions, texts
from tests.ui.test_new_experiment_page import form_errors, previous_widget_label, submit

pytestmark = pytest.mark.timeout(300)


def test_out_of_range_values_show_the_apis_message_under_their_field(dashboard, services, queue_user, queue_data):
    """8 px images and a negative learning rate: each field says why, and Start answers (nothing is created)."""
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.number_input(key="ne_h").set_value(8)
    at.number_input(key="ne_lr").set_value(-0.001)
    at.number_input(key="ne_batch").set_value(0)
    at = submit(at)
    no_exceptions(at)
    assert previous_widget_label(at, "image_size must lie in [16, 4096]; got [8,") == "Image height (px)"
    assert previous_widget_label(at, "Input should be greater than 0") == "Learning rate"
    assert previous_widget_label(at, "Input should be greater than or equal to 1") == "Batch size"
    assert any(e.startswith("The API did not accept the experiment") for e in form_errors(at))
    assert "fix the fields marked to see it" in "\n".join(texts(at, "info"))
    assert queue_user.get("/experiments")["count"] == 0


def test_the_estimate_counts_the_plans_epochs(dashboard, services, queue_user, queue_data):
    """Two seeds of baseline, SIKD, GIN+SIKD and MaxStyle+SIKD at 10 epochs, teachers 4: one teacher per seed
    trains 2 x (4 x 10 + 4) = 88 epochs (the form's old rule, a teacher per distilled method, counted 2 x (4 x 10 +
    3 x 4) = 104)."""
    at = dashboard("new_experiment", url=services.queue.url, token=queue_user.token)
    at.multiselect(key="ne_methods").set_value(["baseline", "sikd", "gin+sikd", "maxstyle+sikd"])
    at.text_input(key="ne_seeds").input("0, 1")
    at.number_input(key="ne_epochs").set_value(10)
    at.number_input(key="ne_tepochs").set_value(4)
    at.number_input(key="ne_h").set_value(32)
    at.number_input(key="ne_w").set_value(32)
    at.text_area(key="ne_kwargs").input('{"widths": [4, 8]}')
    at.text_input(key="ne_name").input("<b>")  # refused: the page stays, showing the estimate of these values
    at = submit(at)
    no_exceptions(at)
    info = "\n".join(texts(at, "info"))
    assert "10 training stages of 88 epochs in all" in info, info  # 2 seeds x (4 methods + a teacher)
    # nothing ran on this worker-less service: no figure, the step sent to be timed on a worker
    assert "not known yet" in info and "not measured yet (being timed on a worker)" in info and "queued" in info
    assert previous_widget_label(at, "not allowed") == "Name"

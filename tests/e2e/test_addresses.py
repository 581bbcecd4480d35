"""Addresses typed into the browser that no page answers: ``/experiments/<id>`` opens that experiment (it was a
blank white page), any other unknown address says "Page not found" and names it (it opened the list without a
word). The real ``sikd serve`` (API and dashboard, no worker: the experiment stays queued) in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_dashboard import Page, browser  # noqa: F401 - the browser fixture
from tests.ui.stack import Stack, phantom_zip, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=45), pytest.mark.timeout(300)]


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    s = Stack(tmp_path / "storage", worker=False, ui=True, log=tmp_path / "serve.log")
    try:
        yield s.wait_ready(timeout=120, ui=True)
    finally:
        s.stop()


def test_unknown_addresses_open_the_right_page_or_say_not_found(browser, stack, tmp_path):  # noqa: F811
    data = stack.admin.upload(phantom_zip(tmp_path, "vendor_a", 20, 1, size=32), "vendor_a")["id"]
    exp = stack.admin.post("/experiments", json=tiny_spec(data, [], name="by address"))["id"]
    page = Page(browser, stack.ui_url)
    browser.get(f"{stack.ui_url}/experiments/{exp}")
    page.wait_text(f"#{exp} by address", "queued", timeout=90)
    assert browser.current_url.endswith(f"/experiment?id={exp}")
    for wrong in ("/experiments/oops", "/no-such-page"):
        browser.get(stack.ui_url + wrong)
        page.wait_text("Page not found", f"No page of the dashboard answers {wrong}", timeout=60)
        assert "No experiments yet" not in page.text()

"""End to end in headless Chromium: the real stack (``sikd serve``: API, worker, dashboard) on free ports with
a temp storage; upload two SYNTHETIC datasets through the dashboard, start a small experiment with the form,
watch it succeed, read the score table and see an overlay and the feature maps.

A screenshot of every page goes to ``test-artifacts/screenshots/`` (the README's come from
``scripts/docs_screenshots.py``, which drives the same helpers over a better-trained experiment). Needs
Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service_helpers import alive, descendants
from tests.ui.stack import Stack, phantom_zip

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=50), pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
WIDTH = 1400
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
               f"--window-size={WIDTH},900"]


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("the browser test needs Debian's Chromium and its driver (found chromium="
                    f"{chromium or 'missing'}, chromedriver={driver or 'missing'}); install them with "
                    "`apt-get install -y chromium chromium-driver` (scripts/test-services.sh does this for CI)")
    return chromium, driver


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    s = Stack(tmp_path / "storage", worker=True, ui=True, log=tmp_path / "serve.log")
    try:
        yield s.wait_ready(timeout=120, ui=True)
    finally:
        s.stop()  # kills the whole process tree and asserts nothing is left


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_binaries()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in [*CHROME_ARGS, f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        opts.add_argument(a)
    service = Service(driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    pids = [service.process.pid, *descendants(service.process.pid)]
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            pids += [p for p in descendants(service.process.pid) if p not in pids] if alive(service.process.pid) else []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(alive(p) for p in pids):
                time.sleep(0.2)
            for p in pids:
                if alive(p):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.5)
            assert not [p for p in pids if alive(p)], "browser processes left behind"


#: Counts finished script runs of the Streamlit app (see ``Page.runs``); null before the app has mounted.
_COUNT_RUNS = """
const app = document.querySelector('[data-testid=stApp]');
if (!app) return null;
if (window.__sikdRuns === undefined || window.__sikdApp !== app) {
  window.__sikdRuns = window.__sikdRuns || 0;
  window.__sikdApp = app;
  window.__sikdState = app.getAttribute('data-test-script-state');
  new MutationObserver(() => {
    const state = app.getAttribute('data-test-script-state');
    if (state === 'notRunning' && window.__sikdState !== 'notRunning') window.__sikdRuns += 1;
    window.__sikdState = state;
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}
return window.__sikdRuns;
"""


class Page:
    """Small helpers over Selenium for Streamlit's DOM (elements re-render: always look them up again)."""

    def __init__(self, driver: Any, base: str, docs_dir: Path | None = None):
        from selenium.webdriver.common.by import By

        self.d, self.base, self.By = driver, base, By
        self.docs_dir = docs_dir  # where shot(..., docs=True) also copies its picture

    def wait(self, check: Callable[[], Any], timeout: float = 30, what: str = "the page") -> Any:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except Exception as e:  # noqa: BLE001 - stale elements while Streamlit re-renders
                last_error = e
            time.sleep(0.25)
        self.shot(f"FAILED-{what.replace(' ', '-')[:40]}", docs=False, always=True)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                             + (f" (last error: {last_error!r})" if last_error else ""))

    def text(self) -> str:
        return self.d.find_element(self.By.TAG_NAME, "body").text

    def wait_text(self, *needles: str, timeout: float = 30) -> None:
        self.wait(lambda: all(n in self.text() for n in needles), timeout, f"text {needles}")

    def runs(self) -> int:
        """How many script runs the page has finished since it loaded, counted from the app's
        ``data-test-script-state`` (a MutationObserver, installed on first use, counts every change to
        ``notRunning``). Take it before an action; ``wait_idle(after=...)`` then waits for that action's run."""
        return int(self.d.execute_script(_COUNT_RUNS) or 0)

    def wait_idle(self, after: int | None = None) -> None:
        """Until Streamlit has finished running the script: the app reports ``notRunning``, no 'Running...'
        status widget shows and, given ``after`` (from :meth:`runs` before the action), a run has finished
        since then, so an action whose run has not started yet is not taken for done."""

        def idle() -> bool:
            if after is not None and self.runs() <= after:
                return False
            state = self.d.find_element(self.By.CSS_SELECTOR, "[data-testid=stApp]").get_attribute(
                "data-test-script-state")
            return state == "notRunning" and not self.d.find_elements(self.By.CSS_SELECTOR,
                                                                       "[data-testid=stStatusWidget]")

        self.wait(idle, 30, "the script run to finish")

    def nav(self, title: str) -> None:
        links = self.d.find_elements(self.By.CSS_SELECTOR, "[data-testid=stSidebarNavLink]")
        [link] = [a for a in links if a.text.strip().splitlines()[-1].strip() == title]
        before = self.runs()
        link.click()
        self.wait_idle(after=before)

    def click_button(self, label: str) -> None:
        def find() -> Any:
            return next(b for b in self.d.find_elements(self.By.CSS_SELECTOR, "button")
                        if b.text.strip() == label and b.is_enabled())
        button = self.wait(find, 20, f"button {label!r}")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()

    def click_text(self, selector: str, label: str) -> None:
        el = self.wait(lambda: next(e for e in self.d.find_elements(self.By.CSS_SELECTOR, selector)
                                    if label in e.text), 20, f"{selector} {label!r}")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", el)

    def select(self, label: str, option: str) -> None:
        """Open the selectbox labelled ``label`` and pick the option whose text starts with ``option``."""
        box = self.wait(lambda: next(b for b in self.d.find_elements(self.By.CSS_SELECTOR, "[data-testid=stSelectbox]")
                                     if b.text.strip().splitlines()[0] == label), 20, f"selectbox {label!r}")
        box.find_element(self.By.CSS_SELECTOR, "input").click()
        before = self.runs()
        self.click_text("[role=option]", option)
        self.wait(lambda: next(b for b in self.d.find_elements(self.By.CSS_SELECTOR, "[data-testid=stSelectbox]")
                               if b.text.strip().splitlines()[0] == label)
                  .find_element(self.By.CSS_SELECTOR, "input").get_attribute("value").startswith(option), 20,
                  f"{label} = {option}")
        self.wait_idle(after=before)

    def field(self, label: str) -> Any:
        return self.wait(lambda: self.d.find_element(self.By.CSS_SELECTOR, f"[aria-label=\"{label}\"]"), 20,
                         f"field {label!r}")

    def type(self, label: str, value: str) -> None:
        """Replace a text/number input's value; Tab commits it (as a user leaving the field)."""
        from selenium.webdriver.common.keys import Keys

        def focus() -> Any:  # retried: an expander still opening can cover the field for a moment
            el = self.field(label)
            self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            el.click()
            return el

        el = self.wait(focus, 20, f"field {label!r} to take the focus")
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        el.send_keys(value)
        el.send_keys(Keys.TAB)
        self.wait(lambda: self.field(label).get_attribute("value") == value, 10, f"{label} = {value}")

    def shot(self, name: str, docs: bool = True, always: bool = False) -> Path | None:
        """A full-page screenshot (the window grows to the page's height) into test-artifacts/screenshots:
        always for the README (``docs_dir``) and on a failure, for every step of the test only with
        ``SIKD_E2E_SCREENSHOTS=1`` (each costs about two seconds of resizing and rendering)."""
        if not (always or self.docs_dir is not None or os.environ.get("SIKD_E2E_SCREENSHOTS")):
            return None
        self.d.set_window_size(WIDTH, 900)
        time.sleep(0.3)
        height = self.d.execute_script(
            "const m = document.querySelector('[data-testid=stMainBlockContainer]');"
            "return m ? Math.ceil(m.getBoundingClientRect().height) + 120 : document.body.scrollHeight;")
        self.d.set_window_size(WIDTH, max(900, min(int(height), 6000)))
        time.sleep(1.0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.d.save_screenshot(str(path))
        self.d.set_window_size(WIDTH, 900)
        if docs and self.docs_dir is not None:
            self.docs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.docs_dir / path.name)
        return path

    def visible_tab_images(self) -> list[Any]:
        panels = [p for p in self.d.find_elements(self.By.CSS_SELECTOR, "[role=tabpanel]") if p.is_displayed()]
        return [img for p in panels for img in p.find_elements(self.By.TAG_NAME, "img")
                if self.d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)]


def test_upload_train_and_read_the_results_in_the_browser(browser, stack, tmp_path):
    zips = {}
    for domain, n, seed in (("vendor_a", 40, 1), ("vendor_b", 10, 2)):
        zips[domain] = tmp_path / f"{domain}.zip"
        zips[domain].write_bytes(phantom_zip(tmp_path, domain, n, seed, size=48))
    page = Page(browser, stack.ui_url)
    browser.get(stack.ui_url)
    page.wait_text("Experiments", "No experiments yet", timeout=60)
    page.wait_text("Signed in as admin")
    browser.get(stack.ui_url.rstrip("/") + "/experiments")  # every page has a URL of its own
    page.wait_text("Experiments", "No experiments yet", timeout=60)
    assert "Page not found" not in page.text()

    # ---- upload two datasets through the dashboard
    page.nav("Datasets")
    page.wait_text("No datasets yet")
    page.click_text("[data-testid=stExpander] summary", "Upload a dataset")
    for domain, path in zips.items():
        upload = page.wait(lambda: browser.find_element(page.By.CSS_SELECTOR, "input[type=file]"), 20, "file input")
        upload.send_keys(str(path))
        page.wait_text(path.name)
        page.type("Name (default: the file name)", domain)
        before = page.runs()
        page.click_button("Upload and validate")
        page.wait_text(f"{domain} is valid and was added", timeout=60)
        page.wait_idle(after=before)
    page.wait_text("Class pixel fractions", "Image/mask pairs")
    page.wait(lambda: len([i for i in browser.find_elements(page.By.CSS_SELECTOR, "[data-testid=stImage] img")
                           if browser.execute_script("return arguments[0].naturalWidth > 0", i)]) >= 4,
              30, "the dataset's thumbnails")
    page.shot("datasets")
    datasets = stack.admin.get("/datasets")["data"]
    assert [d["name"] for d in datasets] == ["vendor_a", "vendor_b"]

    # ---- a small experiment (seconds on a CPU) through the form (the cross dataset is preselected: same classes)
    page.nav("New experiment")
    page.wait_text("Unseen (cross) datasets", "vendor_b")
    page.type("Name", "phantom demo")
    # out of range: the click on Start answers, each message right under its field (a bounded widget used to turn
    # red without a word and the click did nothing)
    page.type("Image height (px)", "8")
    page.type("Learning rate", "-0.00100")
    before = page.runs()
    page.click_button("Start experiment")
    page.wait_idle(after=before)
    page.wait_text("The API did not accept the experiment", "image_size must lie in [16, 4096]; got [8,",
                   "Input should be greater than 0")
    for label, message in (("Image height (px)", "image_size must lie in [16, 4096]"),
                           ("Learning rate", "Input should be greater than 0")):
        field = page.field(label).rect
        [error] = [e.rect for e in browser.find_elements(page.By.CSS_SELECTOR, "[data-testid=stAlertContentError]")
                   if message in e.text]
        assert abs(error["x"] - field["x"]) < 40 and 0 < error["y"] - field["y"] < 160, (label, field, error)
    assert stack.admin.get("/experiments")["count"] == 0
    page.type("Image height (px)", "32")
    page.type("Image width (px)", "32")
    page.type("Epochs", "3")
    page.type("Batch size", "4")
    page.type("Learning rate", "0.01000")
    page.click_text("[data-testid=stExpander] summary", "Advanced options")
    page.type("Device", "cpu")
    page.type("Feature-map images per dataset", "1")
    page.type("Network arguments (JSON)", '{"widths": [8, 16, 32]}')
    page.shot("new-experiment")
    page.click_button("Start experiment")
    page.wait(lambda: "experiment?id=" in browser.current_url, 30, "the experiment's page")
    exp = stack.admin.get("/experiments")["data"][0]
    assert exp["name"] == "phantom demo" and exp["spec"]["image_size"] == [32, 32] and exp["spec"]["epochs"] == 3
    assert exp["spec"]["network_kwargs"] == {"widths": [8, 16, 32]} and exp["spec"]["eval_datasets"] == [
        str(datasets[1]["id"])]
    page.wait_text(f"#{exp['id']} phantom demo", "Stages")
    try:  # for the picture: a stage running with its first curves (it may also be done already)
        page.wait(lambda: ("· running ·" in page.text() and "Training loss" in page.text())
                  or browser.find_elements(page.By.CSS_SELECTOR, "table.sikd-scores"), 60, "training to show")
    finally:
        page.shot("experiment-progress")

    # ---- the page follows it to success on its own (no reload, no click), then shows the paper's table
    page.wait(lambda: browser.find_elements(page.By.CSS_SELECTOR, "table.sikd-scores"), 180,
              "the score table after training")
    assert "experiment?id=" in browser.current_url
    scores = browser.find_element(page.By.CSS_SELECTOR, "table.sikd-scores").text
    for needle in ("Baseline", "SIKD", "Δ SIKD − Baseline", "vendor_a (intra)", "vendor_b (cross)", "Dice",
                   "HD95 (px)"):
        assert needle in scores, (needle, scores)
    assert stack.admin.get(f"/experiments/{exp['id']}")["status"] == "succeeded"
    page.wait_text("Paired per-case comparisons")
    page.shot("experiment-scores")

    # ---- the list refreshes itself while a second experiment (alpha 1, through the API) runs
    second = stack.admin.post("/experiments", json={**exp["spec"], "name": "phantom demo alpha 1", "alpha": 1.0})
    page.nav("Experiments")
    page.wait_text("2 experiment(s), 1 active on this page")
    page.shot("experiments")
    page.wait_text("2 experiment(s) · refreshes", timeout=180)  # done: the fragment re-ran by itself
    assert stack.admin.get(f"/experiments/{second['id']}")["status"] == "succeeded"

    # ---- back to the first one with "Open": overlays and feature maps
    page.select("Experiment", f"#{exp['id']} phantom demo (")
    page.click_button("Open")
    page.wait(lambda: f"experiment?id={exp['id']}" in browser.current_url, 30, "the experiment's page again")
    page.wait(lambda: browser.find_elements(page.By.CSS_SELECTOR, "table.sikd-scores"), 30, "the score table")
    page.click_text("[role=tab]", "Overlays")
    page.wait_text("Contours:", "ground truth", "Contour in red", "Baseline", "SIKD", "Largest SIKD gain")
    page.wait(lambda: len(page.visible_tab_images()) >= 1, 30, "an overlay image")
    page.shot("experiment-overlays")

    page.click_text("[role=tab]", "Cases")  # the drill-down: choose a case, see it at full resolution
    page.wait_text("evaluated cases · click a column header to sort", "Panels, left to right: ground truth")
    page.wait(lambda: len(page.visible_tab_images()) >= 1, 30, "the chosen case's picture")
    page.shot("experiment-cases")

    page.click_text("[role=tab]", "Feature maps")
    page.wait_text("class-wise mean image (teacher's input)", "SIKD student", "one scale for all feature maps")
    page.wait(lambda: len(page.visible_tab_images()) == 1, 30, "the feature maps")
    page.shot("experiment-features")

    # ---- the two side by side
    page.nav("Compare")
    page.wait_text("Settings that differ:", "alpha", "Dice against alpha")
    page.shot("compare")

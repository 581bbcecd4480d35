"""Addresses no page answers: ``/experiments/1`` was a blank white page (Streamlit served the app there and then
its scripts from ``/experiments/static/``, the app again) and an unknown page opened the list without a word.
The rule (:func:`ui.addresses.redirect_for`), and the dashboard's real server applying it (``sikd serve``'s
``streamlit run ui/server.py``, over HTTP; tests/e2e/test_addresses.py sees the pages in a browser)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from sikd_service.serve import ui_command
from tests.service_helpers import free_port, kill_tree
from ui.addresses import PAGE_PATHS, redirect_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(("path", "target"), [
    ("/experiments/1", "/experiment?id=1"), ("/experiments/12/", "/experiment?id=12"),
    ("/experiment/7", "/experiment?id=7"), ("/nope", "/not_found?path=/nope"),
    ("/experiments/abc", "/not_found?path=/experiments/abc"), ("/a/b c", "/not_found?path=/a/b%20c"),
    # Streamlit's own: the root, pages, its core (probed under a page too), assets, media, files
    ("/", None), ("/experiments", None), ("/experiment", None), ("/_stcore/health", None),
    ("/experiment/_stcore/host-config", None), ("/static/js/index.js", None), ("/media/abc", None),
    ("/favicon.png", None), ("/component/x/index.html", None),
])
def test_the_address_rule(path, target):
    assert redirect_for(path) == target
    assert all(redirect_for(f"/{p}") is None for p in PAGE_PATHS)


def test_the_dashboards_server_applies_it(tmp_path):
    """The command ``sikd serve`` runs: unknown addresses are redirected before Streamlit, the rest served."""
    port = free_port()
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(ui_command(port, "127.0.0.1"), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "SIKD_API_URL": "http://127.0.0.1:9"},
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
            time.sleep(0.3)
        r = httpx.get(f"{base}/experiments/1")
        assert r.status_code == 307 and r.headers["location"] == "/experiment?id=1"
        r = httpx.get(f"{base}/models/x/y")
        assert r.status_code == 307 and r.headers["location"] == "/not_found?path=/models/x/y"
        for ok in ("/", "/experiments", "/experiment", "/not_found"):
            r = httpx.get(f"{base}{ok}")
            assert r.status_code == 200 and "<!DOCTYPE html>" in r.text, ok
    finally:
        kill_tree(proc, signal.SIGTERM, timeout=20)
        log.close()

"""Refresh the README's dashboard screenshots (docs/screenshots/) from a running service.

Start the service, train a real experiment to the end, then point this at it; it starts a second
experiment (the same spec with another alpha) to show a run in progress and the Compare page:

    ./start.sh &                                   # or: sikd serve --storage DIR
    python scripts/docs_screenshots.py --experiment 2

Needs Debian's ``chromium`` and ``chromium-driver`` (as the e2e test). The pictures are only as good as
the experiment: use one trained long enough to mean something (the phantom data is SYNTHETIC).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_dashboard import CHROME_ARGS, Page  # noqa: E402 - after the path set-up


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", type=int, required=True, help="a finished experiment to show")
    p.add_argument("--api", default="http://127.0.0.1:8000")
    p.add_argument("--ui", default="http://127.0.0.1:8501")
    p.add_argument("--token", help="API token (default: sikd_data/admin_token)")
    p.add_argument("--alpha", type=float, default=1.0, help="alpha of the second, compared experiment")
    p.add_argument("--second", type=int, help="use this (running) experiment as the second one")
    p.add_argument("--also", type=int, nargs="*", default=[],
                   help="finished experiments shown on the Compare page besides the two (e.g. the rest of a sweep)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    p.add_argument("--wait-second", type=float, default=3600, help="seconds to wait for the second experiment")
    p.add_argument("--progress-epochs", type=int, default=3,
                   help="epochs of the second experiment's first stage before the progress pictures")
    args = p.parse_args(argv)

    token = args.token or (ROOT / "sikd_data" / "admin_token").read_text().strip()
    api = httpx.Client(base_url=args.api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    exp = api.get(f"/experiments/{args.experiment}").raise_for_status().json()
    if exp["status"] != "succeeded":
        print(f"experiment {args.experiment} is {exp['status']}; pick a finished one", file=sys.stderr)
        return 2

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("needs chromium and chromedriver (apt-get install -y chromium chromium-driver)", file=sys.stderr)
        return 2
    profile = tempfile.mkdtemp(prefix="sikd-shots-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in [*CHROME_ARGS, f"--user-data-dir={profile}"]:
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    page = Page(driver, args.ui, docs_dir=args.out)
    try:
        driver.get(args.ui)
        page.wait_text("Experiments", "Signed in as", timeout=60)

        page.nav("Datasets")
        page.wait_text("Class pixel fractions", "Image/mask pairs")
        page.wait(lambda: len([i for i in driver.find_elements(page.By.CSS_SELECTOR, "[data-testid=stImage] img")
                               if driver.execute_script("return arguments[0].naturalWidth > 0", i)]) >= 4,
                  30, "the dataset's thumbnails")
        page.shot("datasets")

        page.nav("New experiment")
        page.wait_text("Unseen (cross) datasets")
        page.type("Name", exp["name"] + f", alpha {args.alpha:g}")
        driver.execute_script("document.activeElement.blur()")
        page.shot("new-experiment")

        if args.second:
            second = api.get(f"/experiments/{args.second}").raise_for_status().json()
        else:
            second = api.post("/experiments", json={**exp["spec"], "name": f"{exp['name']}, alpha {args.alpha:g}",
                                                    "alpha": args.alpha}).raise_for_status().json()
        page.nav("Experiments")
        page.wait_text("1 active on this page", timeout=120)
        page.wait(lambda: api.get(f"/experiments/{second['id']}").json()["stages"][0]["epoch"] >= args.progress_epochs,
                  600, "a few epochs")
        page.shot("experiments")
        driver.get(f"{args.ui}/experiment?id={second['id']}")
        page.wait_text(f"#{second['id']}", "Training loss", timeout=60)
        page.shot("experiment-progress")

        driver.get(f"{args.ui}/experiment?id={exp['id']}")
        page.wait(lambda: driver.find_elements(page.By.CSS_SELECTOR, "table.sikd-scores"), 60, "the score table")
        page.wait_text("Paired per-case comparisons")
        page.shot("experiment-scores")
        page.click_text("[role=tab]", "Distributions")
        page.wait_text("Generalisation: intra vs cross", "Per-case Dice by dataset and method")
        page.shot("experiment-distributions")
        page.click_text("[role=tab]", "Cases")
        page.wait_text("evaluated cases · click a column header to sort")
        page.wait(lambda: len(page.visible_tab_images()) >= 1, 60, "the chosen case's picture")
        page.shot("experiment-cases")
        page.click_text("[role=tab]", "Overlays")
        page.wait_text("Contours:")
        page.wait(lambda: len(page.visible_tab_images()) >= 3, 30, "overlay images")
        page.shot("experiment-overlays")
        page.click_text("[role=tab]", "Feature maps")
        page.wait_text("SIKD student")
        page.wait(lambda: len(page.visible_tab_images()) >= 1, 30, "the feature maps")
        page.shot("experiment-features")

        deadline = time.monotonic() + args.wait_second
        while api.get(f"/experiments/{second['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                print(f"the second experiment did not finish within {args.wait_second:g} s: compare.png is "
                      "not refreshed", file=sys.stderr)
                return 1
            time.sleep(5)
        ids = ",".join(str(i) for i in (second["id"], *args.also, exp["id"]))
        driver.get(f"{args.ui}/compare?ids={ids}")
        page.wait_text("Settings that differ:", "alpha", timeout=60)
        page.shot("compare")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"screenshots written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

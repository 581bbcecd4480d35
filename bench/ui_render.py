"""Dashboard render times with 200 experiments: every page run by Streamlit's AppTest against the real API.

A ``sikd serve`` stack (API + one worker, SQLite, embedded broker) in a temp folder gets three SYNTHETIC
phantom datasets and two tiny trained experiments (so the detail page renders its scores, distributions,
per-case drill-down, overlays and feature maps, and Compare has two to compare); 198 more are submitted and
cancelled at once, so the lists hold 200. Each page is run once to warm the imports, then ``--repeats``
times with the dashboard's API caches emptied before each run (every API request is real). Prints the
median and the maximum per page, and the machine.

    python bench/ui_render.py [--repeats 5] [--experiments 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

from tests.ui.stack import Stack, phantom_zip, tiny_spec  # noqa: E402 - after the path set-up

UI_APP = ROOT / "ui" / "streamlit_app.py"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--experiments", type=int, default=200)
    args = p.parse_args(argv)

    from streamlit.testing.v1 import AppTest

    from ui import client

    with tempfile.TemporaryDirectory(prefix="sikd-ui-bench-") as tmp:
        root = Path(tmp)
        stack = Stack(root / "storage", worker=True, ui=False, log=root / "serve.log")
        try:
            stack.wait_ready(timeout=120)
            api = stack.admin
            ids = {d: api.upload(phantom_zip(root, d, n, s, size=40), d)["id"]
                   for d, n, s in (("vendor_a", 20, 1), ("vendor_b", 6, 2), ("vendor_c", 6, 3))}
            learn = dict(image_size=40, epochs=3, lr=1e-2, network_kwargs={"widths": [8, 16, 32]})
            trained = [api.post("/experiments", json=tiny_spec(ids["vendor_a"], [ids["vendor_b"], ids["vendor_c"]],
                                                               name=f"alpha {a:g}", alpha=a, **learn))["id"]
                       for a in (1.0, 2.0)]
            for i in trained:
                api.wait_experiment(i, timeout=900)
            spec = tiny_spec(ids["vendor_a"], [ids["vendor_b"]], seeds=[0, 1])
            for k in range(args.experiments - len(trained)):
                e = api.post("/experiments", json={**spec, "name": f"sweep {k}"})
                api.post(f"/experiments/{e['id']}/cancel")
            count = api.get("/experiments", params={"limit": 1})["count"]
            os.environ["SIKD_API_URL"], os.environ["SIKD_API_TOKEN"] = stack.url, api.token
            pages = [("experiments", None), ("experiment", {"id": str(trained[1])}),
                     ("experiment", {"id": str(trained[1] + 5)}), ("compare", None), ("new_experiment", None),
                     ("datasets", None)]
            print(f"{platform.node()}: {os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}, "
                  f"Python {platform.python_version()}; {count} experiments (2 succeeded, the rest cancelled); "
                  f"load average {os.getloadavg()[0]:.1f}")
            print(f"{'page':<32} {'median s':>9} {'max s':>7}  (runs with empty caches: {args.repeats})")
            worst = 0.0
            for page, query in pages:
                client.clear_cache()
                at = AppTest.from_file(str(UI_APP), default_timeout=60)
                for k, v in (query or {}).items():
                    at.query_params[k] = v
                at.switch_page(f"app_pages/{page}.py")
                at.run()  # warm-up: imports, first connection
                if at.exception:
                    raise SystemExit(f"{page} raised: {at.exception[0].value}")
                runs = []
                for _ in range(args.repeats):
                    client.clear_cache()
                    t = time.perf_counter()
                    at.run()
                    runs.append(time.perf_counter() - t)
                label = page + (f" ?{'&'.join(f'{k}={v}' for k, v in query.items())}" if query else "")
                print(f"{label:<32} {statistics.median(runs):>9.3f} {max(runs):>7.3f}")
                worst = max(worst, max(runs))
            print(f"slowest run: {worst:.3f} s")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

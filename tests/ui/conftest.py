"""Fixtures of the dashboard tests: the real API in subprocesses, SYNTHETIC data made through the REST API,
and Streamlit's AppTest driving ``ui/streamlit_app.py`` against it.

Two services run for the whole session (started side by side, SQLite + embedded broker in temp folders):

* ``queue_api``: API only, no worker, so experiments stay ``queued`` (cancel, delete, the 200-experiment
  timing and the form's submissions are deterministic);
* ``work_api``: API + one worker, on which a few tiny experiments really train (scores, overlays, feature
  maps, a failed stage).

Every test works as its own fresh user (its own token), so it sees only what it created.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service_helpers import free_port, zip_bytes
from tests.ui.stack import Api, Stack, phantom_zip, tiny_spec

UI_APP = Path(__file__).resolve().parents[2] / "ui" / "streamlit_app.py"


@dataclass
class Services:
    queue: Stack
    work: Stack


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("ui_services")
    queue = Stack(root / "queue", worker=False, ui=False, log=root / "queue.log")
    work = None
    try:
        work = Stack(root / "work", worker=True, ui=False, log=root / "work.log")
        queue.wait_ready()
        work.wait_ready()
        yield Services(queue=queue, work=work)
    finally:
        queue.stop()
        if work is not None:
            work.stop()


@pytest.fixture(scope="session")
def zips(tmp_path_factory) -> dict[str, bytes]:
    """SYNTHETIC phantoms as upload zips: a training domain (20 images) and two unseen ones (6 each)."""
    root = tmp_path_factory.mktemp("ui_zips")
    return {"vendor_a": phantom_zip(root, "vendor_a", 20, 1, size=40),
            "vendor_b": phantom_zip(root, "vendor_b", 6, 2, size=40),
            "vendor_c": phantom_zip(root, "vendor_c", 6, 3, size=40)}


@pytest.fixture(scope="session")
def broken_zip(zips) -> bytes:
    """A dataset whose masks do not match their images (wrong size) and one image without a mask."""
    import io

    import numpy as np
    from PIL import Image

    def png(shape: tuple[int, ...], value: int = 0) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    return zip_bytes({
        "bad/images/case_01.png": png((40, 40), 90), "bad/masks/case_01.png": png((40, 40)),
        "bad/images/case_02.png": png((40, 40), 90), "bad/masks/case_02.png": png((32, 32)),
        "bad/images/case_03.png": png((40, 40), 90), "bad/masks/case_03.png": png((24, 40)),
    })


@pytest.fixture
def queue_user(services) -> Iterator[Api]:
    api = services.queue.admin.new_user("q")
    yield api
    api.close()


@pytest.fixture
def queue_data(queue_user, zips) -> dict[str, int]:
    """The fresh user's three datasets on the worker-less service (ids by domain)."""
    return {name: queue_user.upload(data, name)["id"] for name, data in zips.items()}


@pytest.fixture(scope="session")
def trained(services, zips) -> dict[str, Any]:
    """On the service with a worker, one user's datasets and really trained small experiments: an alpha
    sweep (alpha 1 and 2, two seeds each) and one that fails in its first stage (its training images were
    damaged on disk after the upload, so preprocessing cannot read them)."""
    api = services.work.admin.new_user("trained")
    ids = {name: api.upload(data, name)["id"] for name, data in zips.items()}
    cross = [ids["vendor_b"], ids["vendor_c"]]
    # big enough to learn something in seconds, so SIKD and the baseline differ (both ways) and the
    # dashboard's Δ colours are really exercised
    learn = dict(image_size=40, epochs=4, lr=1e-2, network_kwargs={"widths": [8, 16, 32]}, seeds=[0, 1])
    sweep = [api.post("/experiments", json=tiny_spec(ids["vendor_a"], cross, name=f"alpha {a:g}", alpha=a,
                                                     **learn))["id"] for a in (1.0, 2.0)]
    fragile = api.upload(zips["vendor_a"], "fragile")["id"]
    damaged = sorted((services.work.storage / "datasets" / str(fragile)).rglob("images/*.png"))
    assert damaged, "uploaded images not found in the storage root"
    damaged[0].write_bytes(b"not an image any more")
    broken = api.post("/experiments", json=tiny_spec(fragile, cross, name="broken"))["id"]
    for i in sweep:
        api.wait_experiment(i, timeout=180)
    api.wait_experiment(broken, timeout=120, statuses=("failed",))
    return {"api": api, "datasets": ids, "sweep": sweep, "failed": broken}


SEVEN_METHODS = ["baseline", "sikd", "sdm", "gin", "gin+sikd", "maxstyle", "maxstyle+sikd"]


@pytest.fixture(scope="session")
def binary_zip() -> bytes:
    """SYNTHETIC binary task (one foreground class, a bright square on a dark image): 8 pairs."""
    import io

    import numpy as np
    from PIL import Image

    from tests.service_helpers import zip_bytes

    def png(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    files = {}
    for i in range(8):
        img, mask = np.full((32, 32), 40, np.uint8), np.zeros((32, 32), np.uint8)
        img[4 + i:16 + i, 6 + i:18 + i] = 200
        mask[4 + i:16 + i, 6 + i:18 + i] = 255
        files[f"binary/images/{i}.png"], files[f"binary/masks/{i}.png"] = png(img), png(mask)
    return zip_bytes(files)


@pytest.fixture(scope="session")
def seven(services, zips, binary_zip) -> dict[str, Any]:
    """On the service with a worker, a user with really trained experiments: ``all7``, every method of issue 12
    trained on TWO datasets (vendor_a + vendor_b, multi-source) and scored cross on vendor_c, and ``binary``,
    a baseline on a different task (one class), for the Compare page's cross-task warning. Tiny: one epoch."""
    api = services.work.admin.new_user("seven")
    ids = {name: api.upload(data, name)["id"] for name, data in zips.items()}
    binary = api.upload(binary_zip, "binary")["id"]
    small = dict(epochs=1, seeds=[0], feature_maps=1)
    all7 = api.post("/experiments", json=tiny_spec([str(ids["vendor_a"]), str(ids["vendor_b"])],
                                                   [ids["vendor_c"]], name="all seven", methods=SEVEN_METHODS,
                                                   **small))["id"]
    other = api.post("/experiments", json=tiny_spec(str(binary), [], name="binary task", methods=["baseline"],
                                                    **small))["id"]
    for i in (all7, other):
        api.wait_experiment(i, timeout=240)
    return {"api": api, "datasets": ids, "all7": all7, "binary": other}


# ---------------------------------------------------------------------------------------------- AppTest
@pytest.fixture
def dashboard(monkeypatch) -> Callable[..., Any]:
    """``dashboard(page, url=..., token=..., query=...)``: an AppTest of the dashboard that has run once on
    ``page`` (a file under ui/app_pages/) against the given API. Caches are emptied first, so each page
    starts cold and sees what the test just created through the API."""
    from streamlit.testing.v1 import AppTest

    from ui import client

    client.clear_cache()

    def open_page(page: str, *, url: str, token: str | None, query: dict[str, str] | None = None,
                  timeout: float = 30) -> AppTest:
        monkeypatch.setenv("SIKD_API_URL", url)
        if token is None:
            monkeypatch.delenv("SIKD_API_TOKEN", raising=False)
        else:
            monkeypatch.setenv("SIKD_API_TOKEN", token)
        client.clear_cache()
        at = AppTest.from_file(str(UI_APP), default_timeout=timeout)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        at.switch_page(f"app_pages/{page}.py")
        return at.run()

    yield open_page
    client.clear_cache()


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

"""The dashboard's web server: ``streamlit run ui/server.py`` (``sikd serve`` does) serves ``ui/streamlit_app.py``
like ``streamlit run ui/streamlit_app.py`` would, and first sends addresses no page answers where
:func:`ui.addresses.redirect_for` says (``/experiments/1`` to experiment 1's page, anything else unknown to "not
found"), instead of Streamlit's blank page or silent fallback to the first page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run ui/server.py` puts ui/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import RedirectResponse  # noqa: E402

from ui.addresses import redirect_for  # noqa: E402


class Addresses:
    """ASGI middleware: a GET or HEAD of an address no page answers is redirected (307) before Streamlit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD"):
            target = redirect_for(scope.get("path") or "/")
            if target is not None:
                await RedirectResponse(target, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)


app = st.App(Path(__file__).resolve().parent / "streamlit_app.py", middleware=[Middleware(Addresses)])

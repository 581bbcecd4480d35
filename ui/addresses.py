"""The dashboard's addresses: the URL path of every page, and where an address that no page answers goes.

Streamlit answers any path with its app, whose scripts it then loads relative to that path: ``/experiments/1``
loaded ``/experiments/static/...`` (the app again, not the scripts) and stayed a blank white page, and an
unknown page opened the experiments list without a word. :func:`redirect_for` sends ``/experiments/<id>``
(and ``/experiment/<id>``) to that experiment's page and every other unknown address to the "not found" page,
which names it; ``ui/server.py`` applies it before Streamlit sees the request.
"""

from __future__ import annotations

import re
from urllib.parse import quote

#: The pages' URL paths (``st.Page(url_path=...)`` in ``ui/streamlit_app.py``).
PAGE_PATHS = ("home", "datasets", "experiments", "new_experiment", "experiment", "compare", "sweep", "models",
              "not_found")
#: First path segments Streamlit serves itself (its core, assets, media, components, static files, login).
STREAMLIT_PREFIXES = ("static", "media", "component", "app", "auth", "oauth2callback")
_EXPERIMENT = re.compile(r"^experiments?/(\d+)$")


def redirect_for(path: str) -> str | None:
    """Where a request for ``path`` is sent instead (a path with its query), or None when Streamlit serves it:
    the root, a page, Streamlit's own routes (``_stcore`` anywhere: the app probes ``/<page>/_stcore/health``
    for a base path before ``/_stcore/health``), and files (a last segment with a dot)."""
    parts = [p for p in path.split("/") if p]
    if not parts or any(p.startswith("_") for p in parts) or parts[0] in STREAMLIT_PREFIXES or "." in parts[-1]:
        return None
    if len(parts) == 1 and parts[0] in PAGE_PATHS:
        return None
    m = _EXPERIMENT.match("/".join(parts))
    if m:
        return f"/experiment?id={int(m.group(1))}"
    return "/not_found?path=" + quote("/" + "/".join(parts), safe="/")

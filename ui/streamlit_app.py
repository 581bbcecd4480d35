"""SIKD Studio dashboard: ``streamlit run ui/streamlit_app.py`` (``sikd serve`` starts it for you).

The router: page setup, the sidebar's API connection, then the chosen page from ``app_pages/``. It
talks only to the REST API at ``SIKD_API_URL`` with the token ``SIKD_API_TOKEN`` (or one typed in the
sidebar).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run ui/streamlit_app.py` puts ui/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui.widgets import connection_panel  # noqa: E402

st.set_page_config(page_title="SIKD Studio", page_icon=":material/biotech:", layout="wide")



def home() -> None:
    """The root URL forwards to the experiments list. The default page of ``st.navigation`` answers only at
    ``/`` (its url_path is ignored), so the list itself is an ordinary page with a URL of its own."""
    st.switch_page("app_pages/experiments.py")


def not_found() -> None:
    """Where ``ui/server.py`` sends an address that no page answers (``?path=`` names it)."""
    st.title("Page not found")
    asked = str(st.query_params.get("path") or "")
    st.error(f"No page of the dashboard answers `{asked or 'this address'}`. An experiment's page is "
             "`/experiment?id=<id>`; the pages are in the sidebar.", icon=":material/link_off:")
    st.page_link("app_pages/experiments.py", label="Experiments", icon=":material/list_alt:")
    st.page_link("app_pages/datasets.py", label="Datasets", icon=":material/folder_open:")
    st.page_link("app_pages/models.py", label="Models", icon=":material/neurology:")


PAGES = {
    "": [st.Page(home, title="SIKD Studio", url_path="home", default=True, visibility="hidden"),
         st.Page(not_found, title="Page not found", url_path="not_found", visibility="hidden")],
    "Data": [st.Page("app_pages/datasets.py", title="Datasets", icon=":material/folder_open:", url_path="datasets")],
    "Experiments": [
        st.Page("app_pages/experiments.py", title="Experiments", icon=":material/list_alt:", url_path="experiments"),
        st.Page("app_pages/new_experiment.py", title="New experiment", icon=":material/add_circle:", url_path="new_experiment"),
        st.Page("app_pages/experiment.py", title="Experiment detail", icon=":material/biotech:", url_path="experiment"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/monitoring:", url_path="compare"),
        st.Page("app_pages/sweep.py", title="Sweep", icon=":material/stacked_line_chart:", url_path="sweep"),
    ],
    "Models": [st.Page("app_pages/models.py", title="Models", icon=":material/neurology:", url_path="models")],
}

page = st.navigation(PAGES)
st.sidebar.markdown("**SIKD Studio** · shape-intensity knowledge distillation")
if connection_panel() is not None:
    page.run()

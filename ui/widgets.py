"""Streamlit pieces the pages share: the connection panel, errors explained in words, pictures, pickers."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from ui.client import TOKEN_KEY, ApiError, ApiUnreachable, Client, clear_cache
from ui.figures import render as render_figure
from ui.figures import warm_up
from ui.formatting import CLASS_COLORS, CONTOUR_COLORS, STATUS_ICONS
from ui.scores_data import table_latex

START_HINT = ("Start the service with `sikd serve` (or `./start.sh`): it runs the API on port 8000, a worker and "
              "this dashboard. If the API runs elsewhere, set `SIKD_API_URL` before starting the dashboard.")
TOKEN_HINT = ("`sikd serve` prints the admin token when it starts (it is also saved in `<storage>/admin_token`); "
              "an admin creates tokens for other people with `POST /users`.")


def explain(e: ApiError, doing: str = "") -> str:
    """An API error as a sentence a user can act on."""
    what = f" while {doing}" if doing else ""
    if isinstance(e, ApiUnreachable):
        return (f"The SIKD Studio API does not answer at **{e.base_url}**{what}: `{e.method} {e.url}` failed "
                f"({e.reason}). {START_HINT}")
    if e.status == 401:
        return (f"The API refused `{e.method} {e.url}`: {e.message}. Enter a valid token in the sidebar "
                f"(**API token**). {TOKEN_HINT}")
    if e.status == 403:
        return f"Not allowed{what}: {e.message}."
    if e.status == 404:
        return f"Not found{what}: {e.message}."
    if e.status == 409:
        return f"Not possible now{what}: {e.message}."
    if e.status == 429:
        return f"Too many experiments at once: {e.message}"
    if e.status is not None and e.status >= 500:
        return (f"The API failed{what} (HTTP {e.status} from `{e.method} {e.url}`): {e.message}. "
                "See the log of `sikd serve` for details.")
    return f"The API rejected the request{what} (HTTP {e.status}): {e.message}"


def show_error(e: ApiError, doing: str = "") -> None:
    """Show an API error with its details (the problem list and files of a rejected dataset)."""
    st.error(explain(e, doing), icon=":material/cloud_off:" if isinstance(e, ApiUnreachable) else ":material/error:")
    if e.problems or e.files:
        with st.container(border=True):
            if e.problems:
                st.markdown(f"**Problems ({len(e.problems)})**")
                st.code("\n".join(e.problems), language=None)
            if e.files:
                st.markdown(f"**Files ({len(e.files)})**")
                st.code("\n".join(e.files), language=None)


def fail(e: ApiError, doing: str = "") -> None:
    """Show the error and stop this page's run (nothing below makes sense without the data)."""
    show_error(e, doing)
    st.stop()


def connection_panel() -> dict[str, Any] | None:
    """The sidebar's API connection: URL, token, health, user. Returns ``/me`` when the dashboard can
    talk to the API, else explains in the main area why not and returns None."""
    with st.sidebar:
        st.text_input("API token", key=TOKEN_KEY, type="password",
                      placeholder="using SIKD_API_TOKEN" if Client().token else "paste your token",
                      help="Sent as `Authorization: Bearer <token>`. " + TOKEN_HINT)
        api = Client()
        st.caption(f"API: `{api.base}`")
        try:
            me = api.me()
        except ApiError as e:
            st.caption(":material/cloud_off: API unreachable" if isinstance(e, ApiUnreachable)
                       else ":material/lock: not signed in")
            failure = e
        else:
            failure = None
    if failure is not None:  # explained in the main area, where the page would be
        if failure.status == 401:
            st.warning(f"The API at **{api.base}** needs a token: {failure.message}. Enter your token in the "
                       f"sidebar (**API token**). {TOKEN_HINT}", icon=":material/key:")
        else:
            show_error(failure, "connecting" if isinstance(failure, ApiUnreachable) else "checking your token")
        return None
    with st.sidebar:
        health, problem = api.health()
        if health is None:
            st.caption(f":orange[:material/warning:] service health unknown{': ' + problem if problem else ''}")
        elif health.get("status") == "ok":
            st.caption(f":green[:material/check_circle:] service ok · {health['workers'].get('count', 0)} worker(s)"
                       f" · v{health.get('version', '?')}")
        else:
            bad = [f"{name}: {health[name]['detail']}" for name in ("database", "broker")
                   if not (health.get(name) or {}).get("ok")]
            if not (health.get("workers") or {}).get("ok"):
                bad.append("no worker answers: new experiments wait in the queue until one starts")
            st.caption(":orange[:material/warning:] service degraded — " + "; ".join(bad))
        st.caption(f"Signed in as **{html.escape(me['name'])}**{' (admin)' if me.get('is_admin') else ''}")
        if st.button("Refresh data", help="Forget cached API responses and reload.", width="stretch"):
            clear_cache()
            st.rerun()
    return me


def status_badge(status: str) -> str:
    """A coloured badge of a (display) status, ``succeeded with warnings`` included."""
    colours = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange",
               "succeeded with warnings": "orange", "stopping": "orange"}
    return f":{colours.get(status, 'gray')}-badge[{STATUS_ICONS.get(status, '')} {status}]"


def contour_legend(first: str, second: str | None = None) -> None:
    """The overlay's outline colours: the ground truth's, then the two contoured methods' (the API's
    ``mode=overlay`` draws them in these colours)."""
    names = {"ground truth": CONTOUR_COLORS["ground truth"], first: CONTOUR_COLORS["first"],
             **({second: CONTOUR_COLORS["second"]} if second else {})}
    chips = " ".join(
        f"<span style='display:inline-block;width:1.6em;height:0.35em;background:{c};vertical-align:middle;"
        f"margin:0 0.3em 0 0.9em'></span>{html.escape(name)}" for name, c in names.items())
    st.markdown(f"<div class='sikd-legend'>Contours:{chips}</div>", unsafe_allow_html=True)


def picture(api: Client, url: str, caption: str | None = None) -> None:
    """An image the API serves (thumbnails, overlays, feature maps), fetched with the token."""
    try:
        st.image(api.bytes(url), caption=caption, width="stretch", output_format="PNG")
    except ApiError as e:
        st.warning(f"Picture unavailable ({url}): {explain(e)}")


def confirm_delete(prefix: str, target: Any, message: str) -> bool:
    """The "Yes, delete / Keep it" box, shown while ``st.session_state[f"{prefix}_confirm_delete"]`` holds
    ``target`` (the page's Delete button sets it). Returns True in the run where the user confirms (the
    pending state is cleared first); "Keep it" clears it and reruns. Buttons: ``{prefix}_delete_yes|no``."""
    state = f"{prefix}_confirm_delete"
    if target is None or st.session_state.get(state) != target:
        return False
    with st.container(border=True):
        st.warning(message)
        yes, no = st.columns(2)
        if yes.button("Yes, delete", type="primary", key=f"{prefix}_delete_yes", width="stretch"):
            st.session_state.pop(state, None)
            return True
        if no.button("Keep it", key=f"{prefix}_delete_no", width="stretch"):
            st.session_state.pop(state, None)
            st.rerun()
    return False


def class_legend(class_names: list[str]) -> None:
    """The per-class colours of masks, fills and per-class contours (the API draws them with
    sikd_core.viz.CLASS_COLORS; charts of class statistics use the same colours)."""
    if len(class_names) < 2:
        return
    chips = " ".join(
        f"<span style='display:inline-block;width:0.9em;height:0.9em;background:{CLASS_COLORS[k % len(CLASS_COLORS)]};"
        f"vertical-align:middle;margin:0 0.3em 0 0.9em;border-radius:2px'></span>{html.escape(name)}"
        for k, name in enumerate(class_names) if k > 0)
    st.markdown(f"<div class='sikd-class-legend'>Classes:{chips}</div>", unsafe_allow_html=True)


def _figure_bytes(fig: Any, fmt: str) -> Callable[[], bytes]:
    """Render the figure only when the download is clicked (laid out for a file, cached; see ui.figures)."""
    return lambda: render_figure(fig, fmt)


def figure_downloads(fig: Any, name: str, *, key: str) -> None:
    """PNG and SVG downloads of a plotly chart, for papers (rendered on click, not with the page; the renderer
    is started in the background when the first chart is shown, so a click takes well under a second)."""
    warm_up()
    cols = st.columns([1, 1, 6])
    cols[0].download_button("PNG", _figure_bytes(fig, "png"), file_name=f"{name}.png", mime="image/png",
                            key=f"{key}_png", icon=":material/image:", help="The chart as a PNG (2x scale).")
    cols[1].download_button("SVG", _figure_bytes(fig, "svg"), file_name=f"{name}.svg", mime="image/svg+xml",
                            key=f"{key}_svg", icon=":material/draw:", help="The chart as an SVG (vector).")


def table_downloads(df: pd.DataFrame, name: str, *, key: str, caption: str | None = None, index: bool = True,
                    latex: bool = True) -> None:
    """CSV and LaTeX (booktabs) downloads of a table."""
    flat = df.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" · ".join(str(p) for p in c) for c in flat.columns]
    cols = st.columns([1, 1, 6])
    cols[0].download_button("CSV", flat.to_csv(index=index).encode(), file_name=f"{name}.csv", mime="text/csv",
                            key=f"{key}_csv", icon=":material/table:")
    if latex:
        cols[1].download_button("LaTeX", table_latex(df, index=index, caption=caption).encode(),
                                file_name=f"{name}.tex", mime="application/x-tex", key=f"{key}_tex",
                                icon=":material/functions:")

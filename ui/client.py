"""The dashboard's only way to the service: a small cached HTTP client of the REST API.

Where: ``SIKD_API_URL`` (default http://127.0.0.1:8000). Who: the token typed in the sidebar (kept in
session state) or ``SIKD_API_TOKEN``. GET responses are cached with ``st.cache_data`` keyed on the full
URL, the query parameters and the token, with a short ttl for live data (experiments, datasets), a
longer one for things that never change once written (results of a finished experiment, thumbnails,
overlay and feature-map PNGs). Every write clears the caches, so what the user just did shows at once.
Errors become :class:`ApiError` (the API's ``detail`` and extra fields kept) or :class:`ApiUnreachable`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import httpx
import streamlit as st

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_KEY = "api_token"

#: Seconds a cached GET is reused: live lists and progress, settled results, immutable pictures.
TTL_LIVE = 2.0
TTL_SETTLED = 60.0
TTL_STATIC = 600.0
PAGE_LIMIT = 500  # the API's largest page


class ApiError(Exception):
    """The API answered with an error: ``status``, its ``detail`` and any extra JSON fields."""

    def __init__(self, status: int | None, detail: Any, *, method: str, url: str, body: dict[str, Any] | None = None):
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url
        self.body = body or {}
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if isinstance(self.detail, str):
            return self.detail
        if isinstance(self.detail, list):  # FastAPI's request validation errors
            return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
                             if isinstance(e, dict) else str(e) for e in self.detail)
        return str(self.detail)

    @property
    def problems(self) -> list[str]:
        return [str(p) for p in self.body.get("problems") or []]

    @property
    def files(self) -> list[str]:
        return [str(p) for p in self.body.get("files") or []]


class ApiUnreachable(ApiError):
    """Nothing answered at the API's URL (not started, wrong URL, network down)."""

    def __init__(self, reason: str, *, method: str, url: str, base_url: str):
        self.reason = reason
        self.base_url = base_url
        super().__init__(None, f"cannot reach the SIKD Studio API at {base_url} ({reason})", method=method, url=url)


@st.cache_resource(show_spinner=False)
def _http() -> httpx.Client:
    """One connection pool per dashboard process (httpx clients are thread-safe)."""
    return httpx.Client(timeout=httpx.Timeout(15.0, read=120.0), follow_redirects=False)


def _request(method: str, base: str, token: str | None, path: str, **kw: Any) -> httpx.Response:
    url = base + path
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = _http().request(method, url, headers=headers, **kw)
    except httpx.TransportError as e:
        raise ApiUnreachable(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, method=method, url=url,
                             base_url=base) from None
    if r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            body = {"detail": r.text[:2000] or r.reason_phrase}
        if not isinstance(body, dict):
            body = {"detail": body}
        raise ApiError(r.status_code, body.get("detail", r.reason_phrase), method=method, url=url, body=body)
    return r


def _params(params: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: v for k, v in params if v is not None}


@st.cache_data(ttl=TTL_LIVE, show_spinner=False, max_entries=2000)
def _get_live(base: str, token: str | None, path: str, params: tuple[tuple[str, Any], ...]) -> Any:
    return _request("GET", base, token, path, params=_params(params)).json()


@st.cache_data(ttl=TTL_SETTLED, show_spinner=False, max_entries=2000)
def _get_settled(base: str, token: str | None, path: str, params: tuple[tuple[str, Any], ...]) -> Any:
    return _request("GET", base, token, path, params=_params(params)).json()


@st.cache_data(ttl=TTL_STATIC, show_spinner=False, max_entries=1000)
def _get_bytes(base: str, token: str | None, path: str) -> bytes:
    return _request("GET", base, token, path).content


_CACHES = {"live": _get_live, "settled": _get_settled}


class HealthMonitor:
    """Polls ``<base>/health`` every ``interval`` seconds in a daemon thread while pages read it; stops
    after ``idle`` seconds without readers (and starts again on the next read)."""

    def __init__(self, base: str, interval: float = 10.0, idle: float = 120.0):
        self.base, self.interval, self.idle = base, interval, idle
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._value: tuple[dict[str, Any] | None, str | None] = (None, None)
        self._read_at = time.monotonic()
        self._thread: threading.Thread | None = None

    def latest(self, wait: float = 0.0) -> tuple[dict[str, Any] | None, str | None]:
        with self._lock:
            self._read_at = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sikd-health", daemon=True)
                self._thread.start()
        self._first.wait(wait)
        return self._value

    def _run(self) -> None:
        while time.monotonic() - self._read_at < self.idle:
            try:
                r = _http().get(self.base + "/health", timeout=10)
                r.raise_for_status()
                self._value = (r.json(), None)
            except (httpx.HTTPError, ValueError) as e:
                self._value = (None, f"{type(e).__name__}: {e}")
            self._first.set()
            time.sleep(self.interval)


@st.cache_resource(show_spinner=False)
def _health_monitor(base: str) -> HealthMonitor:
    return HealthMonitor(base)


def clear_cache() -> None:
    """Forget every cached response (after a write, or when the user asks for fresh data)."""
    _get_live.clear()
    _get_settled.clear()
    _get_bytes.clear()


def api_url() -> str:
    return (os.environ.get("SIKD_API_URL") or DEFAULT_URL).strip().rstrip("/")


def current_token() -> str | None:
    """The token typed in the sidebar, else ``SIKD_API_TOKEN``."""
    typed = st.session_state.get(TOKEN_KEY)
    if typed:
        return str(typed).strip()
    return os.environ.get("SIKD_API_TOKEN") or None


@dataclass
class Client:
    """A view of the API for one user (base URL + token); cheap to create on every run."""

    base: str = field(default_factory=api_url)
    token: str | None = field(default_factory=current_token)

    # ---------------------------------------------------------------------------------- reads
    def get(self, path: str, params: dict[str, Any] | None = None, *, cache: str = "live") -> Any:
        """GET ``path`` as JSON, cached (``live``: 2 s, ``settled``: 60 s, ``none``: fresh)."""
        key = tuple(sorted((params or {}).items()))
        if cache == "none":
            return _request("GET", self.base, self.token, path, params=_params(key)).json()
        return _CACHES[cache](self.base, self.token, path, key)

    def page(self, path: str, *, skip: int = 0, limit: int = 50, params: dict[str, Any] | None = None,
             cache: str = "live") -> tuple[list[dict[str, Any]], int]:
        """One page of a ``{data, count}`` list."""
        body = self.get(path, {**(params or {}), "skip": skip, "limit": limit}, cache=cache)
        return body["data"], body["count"]

    def get_all(self, path: str, params: dict[str, Any] | None = None, *, cache: str = "live") -> list[dict[str, Any]]:
        """Every item of a ``{data, count}`` list, fetched in pages of 500."""
        out: list[dict[str, Any]] = []
        while True:
            data, count = self.page(path, skip=len(out), limit=PAGE_LIMIT, params=params, cache=cache)
            out += data
            if not data or len(out) >= count:
                return out

    def bytes(self, path: str) -> bytes:
        """A file (thumbnail, overlay, feature map), cached for 10 minutes."""
        return _get_bytes(self.base, self.token, path)

    def me(self) -> dict[str, Any]:
        """Who the token belongs to: the first call of every page (fast; proves the API answers)."""
        return self.get("/me", cache="settled")

    def health(self, wait: float = 1.5) -> tuple[dict[str, Any] | None, str | None]:
        """The latest ``/health`` (or the error getting it) from a background poller, without blocking a page:
        the API answers ``/health`` only after pinging the workers (about a second whenever its own cache has
        expired). Waits up to ``wait`` seconds for the very first answer."""
        return _health_monitor(self.base).latest(wait)

    # ---------------------------------------------------------------------------------- writes
    def post(self, path: str, *, json: Any = None, files: dict[str, tuple[str, BinaryIO | bytes, str]] | None = None,
             data: dict[str, str] | None = None) -> Any:
        try:
            r = _request("POST", self.base, self.token, path, json=json, files=files, data=data)
        finally:
            clear_cache()
        return r.json() if r.content else None

    def patch(self, path: str, *, json: Any) -> Any:
        try:
            r = _request("PATCH", self.base, self.token, path, json=json)
        finally:
            clear_cache()
        return r.json() if r.content else None

    def query(self, path: str, *, json: Any = None) -> Any:
        """POST a question that changes nothing (an estimate): the caches stay."""
        return _request("POST", self.base, self.token, path, json=json).json()

    def predict(self, model_id: int, files: list[tuple[str, bytes, str]]) -> list[dict[str, Any]]:
        """Segment images (``(filename, bytes, mime)``) with a model: masks and overlays (base64 PNG).
        Writes nothing on the service, so the caches stay."""
        r = _request("POST", self.base, self.token, f"/models/{model_id}/predict",
                     files=[("files", f) for f in files])
        return r.json()["data"]

    def predict_series(self, model_id: int, files: list[tuple[str, bytes, str]]) -> tuple[bytes, str, int]:
        """Segment a DICOM series (one .zip of its files, or its .dcm files) with a model: the DICOM SEG's bytes,
        its file name and the number of slices it covers (the API answers ``application/dicom``)."""
        r = _request("POST", self.base, self.token, f"/models/{model_id}/predict",
                     files=[("files", f) for f in files])
        if not r.headers.get("content-type", "").startswith("application/dicom"):
            raise ApiError(422, "the files were not read as one DICOM series (send one .zip of the series, or only "
                           "its .dcm files)", method="POST", url=self.base, body={})
        name = r.headers.get("content-disposition", "").partition('filename="')[2].rstrip('"') or "seg.dcm"
        return r.content, name, int(r.headers.get("x-sikd-slices", 0))

    def model_card(self, model_id: int) -> dict[str, Any]:
        """The model's card (datasets, scores with CIs, health, terms, citation), cached for a minute."""
        return self.get(f"/models/{model_id}/card", cache="settled")

    def delete(self, path: str) -> None:
        try:
            _request("DELETE", self.base, self.token, path)
        finally:
            clear_cache()

    def downloader(self, path: str) -> Callable[[], bytes]:
        """A callable for ``st.download_button(data=...)``: the file is fetched only when clicked.

        It captures the URL and token now, because it runs outside the page's session."""
        base, token = self.base, self.token

        def fetch() -> bytes:
            return _request("GET", base, token, path).content

        return fetch

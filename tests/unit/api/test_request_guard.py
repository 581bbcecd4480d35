"""The request guard (api.guard): the token and the body's size are checked before any byte of the body is read.

Each case calls the ASGI app directly with an endless body and counts the bytes the app asked for: a request
without a valid token, or over its route's limit, is answered (401, 413) having read nothing, and a chunked body
without a length is cut as soon as it passes the limit. A live server under a 500 MB body is measured in
``tests/unit/api/test_memory.py`` (``bench/hostile_memory.py``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import anyio
import pytest

from tests.service_helpers import ADMIN_TOKEN, tiny_spec

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


def call(app, method: str, path: str, headers: dict[str, str], chunks: Iterator[bytes],
         content_length: int | None = None) -> tuple[int, dict, int]:
    """(status, JSON body, bytes of the request body the app read) of one request sent as ``chunks``."""
    read = 0
    out: dict = {"body": b""}
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if content_length is not None:
        hdrs.append((b"content-length", str(content_length).encode()))
    else:
        hdrs.append((b"transfer-encoding", b"chunked"))
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": hdrs, "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {}}

    async def receive() -> dict:
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    anyio.run(app, scope, receive, send)
    return out["status"], json.loads(out["body"] or b"{}"), read


def endless(size: int = MB) -> Iterator[bytes]:
    return itertools.repeat(b" " * size)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}])
@pytest.mark.parametrize("path,length", [("/experiments", 500 * MB), ("/experiments", None), ("/datasets", None),
                                         ("/models/1/predict", 500 * MB), ("/users", None)])
def test_no_valid_token_is_401_before_any_body_is_read(client, headers, path, length):
    status, body, read = call(client.app, "POST", path, {"Content-Type": "application/json", **headers},
                              endless(), length)
    assert status == 401, body
    assert read == 0
    assert "token" in body["detail"]


def test_a_body_over_the_json_limit_is_413_from_its_length(client, alice, settings):
    status, body, read = call(client.app, "POST", "/experiments", {"Content-Type": "application/json", **alice},
                              endless(), 60 * MB)
    assert (status, read) == (413, 0), body
    assert "60.0 MiB" in body["detail"] and "SIKD_MAX_JSON_BYTES" in body["detail"]


def test_a_chunked_body_is_cut_at_the_limit(client, alice, settings):
    """No Content-Length: the body is counted as it streams; the 413 goes out once it passes the limit."""
    settings.max_json_bytes = 3 * MB
    status, body, read = call(client.app, "POST", "/experiments", {"Content-Type": "application/json", **alice},
                              endless(MB // 4))
    assert status == 413, body
    assert 3 * MB < read <= 3 * MB + MB // 4
    assert "passed the limit of 3.0 MiB" in body["detail"]


def test_uploads_have_their_own_limit(client, alice, settings):
    """A dataset upload may be larger than a JSON body (``SIKD_MAX_UPLOAD_BYTES``), but no larger."""
    settings.max_json_bytes = MB
    settings.max_upload_bytes = 4 * MB
    ctype = {"Content-Type": "multipart/form-data; boundary=xyz"}
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\n'
    status, body, read = call(client.app, "POST", "/datasets", {**ctype, **alice},
                              itertools.chain([head], endless(MB // 4)))
    assert status == 413 and 4 * MB < read < 5 * MB, (body, read)  # past the JSON limit, cut at the upload limit
    status, body, read = call(client.app, "POST", "/datasets", {**ctype, **alice}, endless(), 6 * MB)
    assert (status, read) == (413, 0) and "SIKD_MAX_UPLOAD_BYTES" in body["detail"]


def test_a_body_within_the_limit_still_works(client, alice, datasets, jobs, settings):
    spec = json.dumps(tiny_spec(datasets)).encode()
    settings.max_json_bytes = len(spec)
    status, body, read = call(client.app, "POST", "/experiments", {"Content-Type": "application/json", **alice},
                              iter([spec[:10], spec[10:]]))
    assert status == 201 and read == len(spec), body
    status, body, _ = call(client.app, "POST", "/experiments", {"Content-Type": "application/json", **alice},
                           iter([spec + b" "]))
    assert status == 413, body


def test_public_routes_need_no_token_and_a_bad_length_is_400(client):
    status, body, read = call(client.app, "GET", "/health", {}, iter([]), 0)
    assert status == 200 and read == 0
    status, body, read = call(client.app, "POST", "/experiments", {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                              endless(), None)
    assert status == 413
    status, body, read = call(client.app, "POST", "/experiments", {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                                   "Content-Length": "-1"}, endless(), None)
    assert (status, read) == (400, 0) and "Content-Length" in body["detail"]

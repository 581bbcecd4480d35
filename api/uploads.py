"""Streaming multipart uploads: files go to disk chunk by chunk and the request is refused (413) as soon
as it passes its limits, so a large or endless upload never sits in memory or fills the disk."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from sikd_service.errors import ServiceError

MAX_FIELD_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 1024 * 1024  # headers and boundaries around the files


@dataclass
class ReceivedFile:
    field: str
    filename: str
    path: Path
    size: int = 0


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def safe_filename(name: str) -> str:
    """The base name of a client-side file name, reduced to harmless characters."""
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"[^\w.\- ]+", "_", base).strip(" .")[:200] or "upload"


class _Receiver:
    def __init__(self, dest: Path, file_fields: set[str], max_file_bytes: int, max_total_bytes: int,
                 max_files: int):
        self.dest = dest
        self.file_fields = file_fields
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self.form = ReceivedForm()
        self.total = 0
        self._headers: dict[str, str] = {}
        self._hfield = b""
        self._hvalue = b""
        self._file: ReceivedFile | None = None
        self._fh: BinaryIO | None = None
        self._name: str | None = None
        self._value = bytearray()

    # python-multipart callbacks -------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers, self._file, self._name = {}, None, None
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hfield += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._hfield.decode("latin-1").lower()] = self._hvalue.decode("latin-1")
        self._hfield, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get("content-disposition", ""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        self._name = name
        if filename is None:
            if name not in self.file_fields:
                return  # a text field
            filename = b""  # a file sent without a file name (or an empty one): still the file, named "upload"
        if name not in self.file_fields:
            raise ServiceError(400, f"unexpected file field {name!r}; send files in {' or '.join(sorted(self.file_fields))}")
        if len(self.form.files) >= self.max_files:
            raise ServiceError(413, f"too many files: at most {self.max_files} per request")
        fname = safe_filename(filename.decode("utf-8", "replace"))
        path = self.dest / f"{len(self.form.files):04d}_{fname}"
        self._file = ReceivedFile(field=name, filename=fname, path=path)
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in on_part_end / close()
        self.form.files.append(self._file)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._file is not None:
            self._file.size += n
            self.total += n
            if self._file.size > self.max_file_bytes:
                raise ServiceError(413, f"{self._file.filename} is larger than the limit of {_human(self.max_file_bytes)}",
                               files=[self._file.filename])
            if self.total > self.max_total_bytes:
                raise ServiceError(413, f"the upload is larger than the limit of {_human(self.max_total_bytes)}")
            assert self._fh is not None
            self._fh.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise ServiceError(413, f"form field {self._name!r} is too long")

    def on_part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        elif self._name is not None:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_multipart(request: Request, *, dest: Path, file_fields: set[str], max_file_bytes: int,
                            max_total_bytes: int, max_files: int) -> ReceivedForm:
    """Parse a ``multipart/form-data`` body into text fields and files written under ``dest``."""
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in opts:
        raise ServiceError(415, "send the upload as multipart/form-data")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_total_bytes + MULTIPART_OVERHEAD:
        raise ServiceError(413, f"the upload ({_human(int(length))}) is larger than the limit of {_human(max_total_bytes)}")
    dest.mkdir(parents=True, exist_ok=True)
    rec = _Receiver(dest, file_fields, max_file_bytes, max_total_bytes, max_files)
    callbacks: Any = {name: getattr(rec, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    try:
        parser = MultipartParser(opts[b"boundary"], callbacks)
    except Exception as e:  # noqa: BLE001 - python-multipart refuses the boundary itself (e.g. over 256 bytes)
        raise ServiceError(400, f"malformed multipart header: {e}") from None
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected during the upload") from None
    except ServiceError:
        raise
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors
        raise ServiceError(400, f"malformed multipart body: {e}") from None
    finally:
        rec.close()
    return rec.form


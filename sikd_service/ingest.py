"""Turning an uploaded .zip (or a folder) into a validated dataset row.

Archives are checked twice against zip bombs and path tricks: once on the central directory before
anything is extracted (entry names, symlinks, entry count, declared sizes and compression ratios) and
again while extracting, counting the bytes actually written. Validation itself is
``sikd_core.data.load_dataset(scan=True)``: every pair is read once, and its problems come back with
the files named. A rejected upload leaves nothing behind: no row and no files.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from sqlalchemy.orm import Session

from sikd_core.data import dataset_stats, load_dataset
from sikd_core.data.dicom import is_dicom_name
from sikd_core.data.io import SUPPORTED_EXTENSIONS, file_extension
from sikd_core.errors import DatasetError
from sikd_core.export.card import content_hash
from sikd_core.viz import downscale, overlay_contours, overlay_fill, to_rgb_uint8
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.errors import ServiceError, dataset_error
from sikd_service.storage import (
    OutsideFolderError,
    dataset_dir,
    discard,
    folder_size,
    manifest_from_stored,
    manifest_to_stored,
)
from sikd_service.tables import Dataset, User

log = logging.getLogger("sikd.sikd_service.ingest")

#: Entries this small are not judged by their compression ratio (tiny files compress oddly).
RATIO_MIN_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
NAME_MAX = 255  # bytes per path component on common filesystems
_JUNK_PARTS = {"__MACOSX"}


#: Besides images and volumes, what a dataset may hold: its JSON (dataset.json, a datalist) and notes.
_METADATA_EXTENSIONS = (".json", ".txt", ".md", ".csv")


def _may_be_dataset_file(name: str) -> bool:
    return file_extension(name) in SUPPORTED_EXTENSIONS + _METADATA_EXTENSIONS or is_dicom_name(name)


def _prune_unused(folder: Path, stored: dict) -> list[str]:
    """Delete the files of ``folder`` that the dataset does not use (not a sample's image or label, not
    metadata); returns their paths relative to ``folder``. A dataset keeps what it needs, not what came along."""
    used = {p for s in stored["samples"] for p in [*s["image"], s.get("label")] if p}  # relative to ``folder``
    dropped = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(folder).as_posix()
            if rel not in used and file_extension(rel) not in _METADATA_EXTENSIONS:
                path.unlink()
                dropped.append(rel)
    return dropped


def _is_junk(parts: list[str]) -> bool:
    return any(p in _JUNK_PARTS for p in parts) or parts[-1] in (".DS_Store", "Thumbs.db")


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    norm = name.replace("\\", "/")
    if "\x00" in name:
        return "a NUL byte in the name"
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "an absolute path"
    if ".." in norm.split("/"):
        return "a path that leaves the archive (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted"
    long = [p for p in norm.split("/") if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX]
    if long:
        return f"a name part longer than {NAME_MAX} bytes"
    return None


def _name_clashes(names: list[str]) -> list[str]:
    """Entries that are both a file and a folder (``extra`` beside ``extra/x``): they cannot be extracted."""
    files = set(names)
    clashes = set()
    for n in names:
        parts = n.rstrip("/").split("/")
        for k in range(1, len(parts)):
            parent = "/".join(parts[:k])
            if parent in files:
                clashes.add(parent)
    return sorted(clashes)


_EOCD, _ZIP64_LOCATOR, _ZIP64_EOCD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"


def declared_entries(path: Path) -> int | None:
    """The entry count a zip's end record declares, read from the file's last 64 KiB (and the zip64 end record
    it points to) without parsing the central directory; None when there is no such record.

    A fast path only: an archive declaring too many entries is refused before Python parses each of them
    (100 001 entries held the GIL for seconds, slowing every other request); one that declares fewer than it
    holds is still caught by counting the parsed entries."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (22 + 65535)))
        tail = f.read()
        i = tail.rfind(_EOCD)
        if i < 0 or len(tail) - i < 22:
            return None
        (total,) = struct.unpack_from("<H", tail, i + 10)
        if total != 0xFFFF or i < 20 or tail[i - 20:i - 16] != _ZIP64_LOCATOR:
            return total
        (offset,) = struct.unpack_from("<Q", tail, i - 20 + 8)
        if offset > size - 56:
            return None
        f.seek(offset)
        rec = f.read(56)
    return struct.unpack_from("<Q", rec, 32)[0] if rec[:4] == _ZIP64_EOCD else None


def check_archive(path: Path, settings: Settings) -> list[zipfile.ZipInfo]:
    """Check the central directory; returns the entries to extract (files, junk skipped)."""
    if not zipfile.is_zipfile(path):
        raise ServiceError(400, "the upload is not a zip archive; zip the dataset folder (images/ + masks/, or an "
                            "nnU-Net dataset) and upload the .zip")
    declared = declared_entries(path)
    if declared is not None and declared > settings.max_archive_files:  # before parsing any entry
        raise ServiceError(413, f"the archive holds {declared} files and folders; the limit is "
                                f"{settings.max_archive_files}")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ServiceError(400, f"the zip archive cannot be read: {e}") from None
    if len(infos) > settings.max_archive_files:  # before any per-entry work
        raise ServiceError(413, f"the archive holds {len(infos)} files and folders; the limit is {settings.max_archive_files}")
    unsafe = [(i.filename, p) for i in infos if (p := _entry_problem(i))]
    if unsafe:
        raise ServiceError(400, "the archive holds unsafe entries: " + "; ".join(f"{n!r} ({p})" for n, p in unsafe[:10]),
                       problems=[f"{n}: {p}" for n, p in unsafe], files=[n for n, _ in unsafe])
    files = [i for i in infos if not i.is_dir() and not _is_junk(i.filename.replace("\\", "/").split("/"))]
    if not files:
        raise ServiceError(400, "the zip archive is empty")
    names = [i.filename.replace("\\", "/") for i in files]
    dups = sorted(n for n, c in Counter(names).items() if c > 1)  # linear: 100 000 entries take milliseconds
    if dups:
        raise ServiceError(400, "the archive lists the same file more than once: " + ", ".join(dups[:10]), files=dups)
    clashes = _name_clashes(names)
    if clashes:
        raise ServiceError(400, "the archive holds a file and a folder of the same name: " + ", ".join(clashes[:10]),
                           files=clashes)
    if len(files) > settings.max_archive_files:
        raise ServiceError(413, f"the archive holds {len(files)} files; the limit is {settings.max_archive_files}")
    unusable = [n for n in names if not _may_be_dataset_file(n)]
    if len(unusable) > settings.max_unused_files:  # from the names alone: nothing extracted yet
        raise ServiceError(422, f"the archive holds {len(unusable)} files that cannot be part of a dataset (neither "
                                f"images, volumes nor JSON), e.g. {', '.join(unusable[:5])}; the limit is "
                                f"{settings.max_unused_files} (SIKD_MAX_UNUSED_FILES): zip only the dataset",
                           files=unusable[:100])
    total = sum(i.file_size for i in files)
    if total > settings.max_uncompressed_bytes:
        raise ServiceError(413, f"the archive would expand to {total} bytes; the limit is "
                            f"{settings.max_uncompressed_bytes} bytes")
    ratio = settings.max_compression_ratio
    bombs = [i.filename for i in files
             if i.file_size > RATIO_MIN_BYTES and i.file_size > ratio * max(i.compress_size, 1)]
    if bombs:
        raise ServiceError(413, f"suspicious compression ratio (over {ratio:g}:1) of " + ", ".join(bombs[:10]),
                       files=bombs)
    archive = path.stat().st_size
    if total > RATIO_MIN_BYTES and total > ratio * max(archive, 1):
        raise ServiceError(413, f"the archive expands {total / max(archive, 1):.0f}-fold; the limit is {ratio:g}:1")
    return files


def extract_archive(path: Path, files: list[zipfile.ZipInfo], dest: Path, settings: Settings) -> None:
    """Extract ``files`` under ``dest``, counting the bytes really written against the declared sizes."""
    budget = settings.max_uncompressed_bytes
    written_total = 0
    root = dest.resolve()
    try:
        with zipfile.ZipFile(path) as zf:
            for info in files:
                rel = info.filename.replace("\\", "/").lstrip("/")
                target = (root / rel).resolve()
                if root not in target.parents:  # belt and braces after check_archive
                    raise ServiceError(400, f"unsafe entry {info.filename!r}", files=[info.filename])
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        written_total += len(chunk)
                        if written > info.file_size or written_total > budget:
                            raise ServiceError(413, f"{info.filename} expands beyond its declared size "
                                                f"({info.file_size} bytes): rejected as a zip bomb",
                                           files=[info.filename])
                        out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise ServiceError(400, f"the zip archive is corrupt or uses an unsupported compression: {e}") from None


def _strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def check_json_references(folder: Path) -> None:
    """JSON files (datalists, dataset.json) may only name files inside the archive: an absolute path or a
    ``..`` that climbs out would make the server read its own files (or hang on a device file)."""
    root = folder.resolve()
    problems, files = [], []
    for path in sorted(folder.rglob("*.json")):
        rel = path.relative_to(folder).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            refs = _strings(data)
        except RecursionError:
            raise ServiceError(400, f"{rel} is nested too deeply to be read", files=[rel]) from None
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # sikd_core reports unreadable JSON it needs, with its name
        for ref in refs:
            norm = ref.replace("\\", "/")
            if not ("/" in norm or "." in norm):
                continue
            absolute = norm.startswith("/") or re.match(r"^[A-Za-z]:/", norm) is not None
            target = Path(norm) if absolute else (path.parent / norm)
            if absolute or not os.path.normpath(target.absolute()).startswith(str(root) + os.sep):
                problems.append(f"{rel}: {ref!r} points outside the archive")
                if rel not in files:
                    files.append(rel)
    if problems:
        raise ServiceError(400, "the archive refers to files outside the archive: " + "; ".join(problems[:5]),
                       problems=problems, files=files)


def register_folder(session: Session, settings: Settings, *, owner: User, folder: Path, name: str,
                    shared: bool = False, synthetic: bool = False) -> Dataset:
    """Validate the dataset in ``folder``, move it to ``<storage>/datasets/<id>/`` and add its row.

    The caller commits. On any error the folder is left where it was (the caller discards it).
    """
    check_json_references(folder)
    try:
        manifest = load_dataset(folder, name=name, scan=True)
    except DatasetError as e:
        raise dataset_error(e) from None
    try:
        stored = manifest_to_stored(manifest, folder)
    except OutsideFolderError as e:
        raise ServiceError(400, str(e), files=e.files) from None
    stats = dataset_stats(manifest)
    dropped = _prune_unused(folder, stored)
    if dropped and manifest.format == "dicom":  # the volumes were read out of them: no DICOM header is kept
        stats.setdefault("warnings", []).append(
            f"the {len(dropped)} DICOM file(s) were read into NIfTI volumes (pixels and geometry) and not kept")
    elif dropped:
        stats.setdefault("warnings", []).append(
            f"{len(dropped)} file(s) not part of the dataset were not kept, e.g. {', '.join(dropped[:5])}")
    stats["content_hash"] = content_hash(folder)  # of what is kept: finds repeated uploads
    ds = crud.create_dataset(session, owner=owner, name=name, manifest=stored, stats=stats,
                             size_bytes=folder_size(folder), shared=shared, synthetic=synthetic)
    final = dataset_dir(settings, ds.id)
    if final.exists():  # left over from an older database on the same storage
        discard(settings, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, final)
    return ds


def ingest_zip(session: Session, settings: Settings, *, owner: User, archive: Path, name: str,
               workdir: Path) -> Dataset:
    """Check, extract, validate and register an uploaded zip; commits on success, leaves nothing on failure."""
    files = check_archive(archive, settings)
    folder = workdir / "data"
    folder.mkdir()
    ds = None
    try:
        extract_archive(archive, files, folder, settings)
        archive.unlink()  # the extracted copy is kept; free the space now
        ds = register_folder(session, settings, owner=owner, folder=folder, name=name)
        session.commit()
        return ds
    except BaseException:
        session.rollback()
        if ds is not None:
            discard(settings, dataset_dir(settings, ds.id))
        raise


def dataset_manifest(settings: Settings, ds: Dataset):  # -> sikd_core.data.Manifest
    return manifest_from_stored(ds.manifest, dataset_dir(settings, ds.id))


#: The longest side of a full-resolution view (a sample's ``thumbnail_png(full=True)``, a panel of a case view):
#: the usual medical images whole, huge ones bounded.
FULL_SIDE = 2048


def thumbnail_png(settings: Settings, ds: Dataset, index: int, *, full: bool = False) -> bytes:
    """A picture of sample ``index``: classes filled and outlined over the image (cached on disk), small
    (``settings.thumbnail_size``) or, ``full``, at the image's own resolution (at most :data:`FULL_SIDE`)."""
    side = FULL_SIDE if full else settings.thumbnail_size
    cache = dataset_dir(settings, ds.id) / ".thumbs" / f"{index}_{side}.png"
    if cache.is_file():
        return cache.read_bytes()
    from sikd_core.data.preprocess import load_original  # needs PyTorch: imported on the first picture

    manifest = dataset_manifest(settings, ds)
    image, label = load_original(manifest, index)
    picture = overlay_contours(overlay_fill(to_rgb_uint8(image), label.astype("uint8")), {"ground_truth": label})
    picture = downscale(picture, side)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    data = buf.getvalue()
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, cache)
    return data

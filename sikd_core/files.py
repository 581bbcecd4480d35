"""Writing checkpoints and model files: atomically, and with an error that says which file and why."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

from sikd_core.errors import StorageWriteError


def save_atomically(obj: Any, path: Path, what: str) -> Path:
    """``torch.save(obj)`` into ``path`` through a temporary file and a rename (a crash leaves the old file).

    A failed write is a :class:`StorageWriteError` naming ``what``, the path, the errno and its meaning, and
    leaves no temporary file behind. The file is opened by Python, not by torch: torch's own writer reports a
    read-only folder as "File ... cannot be opened" and a full disk as "file write failed", without the errno.
    """
    import torch

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = getattr(e, "errno", None)
        reason = f"[Errno {code}] {errno.errorcode.get(code, '?')}: {e.strerror or e}" if code else str(e)
        err = StorageWriteError(f"cannot write the {what} {path}: {reason}")
        err.errno = code
        raise err from e
    return path

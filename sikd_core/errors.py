"""Exceptions raised by sikd_core. Every message is meant to be shown to a user as-is."""

from __future__ import annotations


class SIKDError(Exception):
    """Base class of every error sikd_core raises on purpose."""


class SpecError(SIKDError, ValueError):
    """An experiment spec is invalid (unknown key, bad value, missing dataset...). ``errors``, when known, lists
    each problem as ``{loc, msg, type}`` with ``loc`` naming the field (FastAPI's 422 items)."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = list(errors or [])


class DatasetError(SIKDError, ValueError):
    """A dataset cannot be read or is inconsistent.

    ``problems`` lists one human-readable line per problem and ``files`` the offending files
    (relative to the dataset root where possible), so a caller can show both.
    """

    def __init__(self, message: str, problems: list[str] | None = None, files: list[str] | None = None):
        self.problems = list(problems or [])
        self.files = list(files or [])
        full = message
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            full += "\n  - " + "\n  - ".join(shown)
            if more > 0:
                full += f"\n  ... and {more} more"
        super().__init__(full)
        self.message = message


class UnknownModelError(SIKDError, KeyError):
    """A model name is not in the registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the plain message instead
        return str(self.args[0]) if self.args else ""


class TrainingHealthError(SIKDError, RuntimeError):
    """Training stopped because it became unhealthy (NaN/inf loss)."""


class TrainingCancelled(SIKDError):
    """Raised inside the training loop when a callback asks to stop (user cancel)."""


class OutputExistsError(SIKDError, FileExistsError):
    """An output folder already holds data that would be overwritten."""


class StorageWriteError(SIKDError, OSError):
    """A checkpoint or model file could not be written: the message names the file, the errno and its meaning
    (torch's own writer says only "File ... cannot be opened" or "file write failed")."""

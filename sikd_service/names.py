"""Display names people give things (datasets, experiments, users): the one check every name passes."""

from __future__ import annotations

import unicodedata

from sikd_service.errors import ServiceError

#: Characters a display name may not hold: control and format characters (newlines, NUL, bidi overrides)
#: and ``<``, which opens a tag in the HTML and Markdown of other tools showing the name. ``>`` alone opens
#: nothing (the dashboard escapes names anyway), so arrows such as "A -> B" are fine.
_FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_MARKUP = set("<")


def name_problem(name: str, *, what: str, max_length: int = 200) -> str | None:
    """Why ``name`` is not an acceptable ``what`` (e.g. "dataset name"), or None when it is."""
    if not 1 <= len(name) <= max_length:
        return f"the {what} must have 1 to {max_length} characters"
    bad = sorted({c for c in name if c in _MARKUP or unicodedata.category(c) in _FORBIDDEN_CATEGORIES})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" + (f" {c!r}" if c in _MARKUP else "") for c in bad)
        return (f"the {what} holds characters that are not allowed ({shown}): use letters, digits, spaces and "
                "punctuation other than <")
    return None


def check_name(name: str, *, what: str, max_length: int = 200) -> str:
    """``name`` if it is an acceptable ``what``, else a 422 saying which characters are not allowed."""
    problem = name_problem(name, what=what, max_length=max_length)
    if problem:
        raise ServiceError(422, problem)
    return name

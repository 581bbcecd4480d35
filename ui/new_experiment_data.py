"""The New experiment form's parsing: the API's 422 for a spec as messages per field, and the seeds box."""

from __future__ import annotations

import re
from typing import Any

_LINE = re.compile(r"^\s*([A-Za-z_][\w]*(?:\.[\w]+)*|\(spec\)):\s*(.+)$")


def spec_errors(detail: Any) -> tuple[dict[str, list[str]], list[str]]:
    """The API's 422 for a spec, as ``({field: [messages]}, [messages not about one field])``.

    The API words spec errors as ``invalid experiment spec:`` followed by ``  <field>: <message>`` lines
    (sikd_core's ``format_validation_error``); FastAPI's own validation errors are lists of
    ``{loc, msg}``; anything else (unknown dataset ids, class mismatch) is one general message.
    """
    fields: dict[str, list[str]] = {}
    general: list[str] = []

    def add(loc: str, msg: str) -> None:
        msg = re.sub(r"^(Value|Assertion) error, ", "", msg.strip())
        key = loc.split(".")[0]
        if key in ("(spec)", "", "body"):
            general.append(msg)
        else:
            fields.setdefault(key, []).append(msg)

    if isinstance(detail, list):
        for e in detail:
            if isinstance(e, dict):
                loc = [str(p) for p in e.get("loc", []) if p != "body"]
                add(".".join(loc), str(e.get("msg", "")))
            else:
                general.append(str(e))
        return fields, general
    text = str(detail or "")
    lines = text.splitlines()
    if lines and lines[0].strip().startswith("invalid experiment spec"):
        for line in lines[1:]:
            m = _LINE.match(line)
            if m:
                add(m.group(1), m.group(2))
            elif line.strip():
                general.append(line.strip())
        return fields, general
    general.append(text)
    return fields, general


def parse_seeds(text: str) -> list[int]:
    """``"0, 1 2"`` -> ``[0, 1, 2]``; raises ValueError naming the bad part."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    if not parts:
        raise ValueError("give at least one seed, e.g. 0 or 0, 1, 2")
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except ValueError:
            raise ValueError(f"{p!r} is not a whole number; seeds are integers separated by commas") from None
    return out

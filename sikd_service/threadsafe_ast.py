"""``ast.parse`` made safe to call from several threads at once on the CPython versions where it is not.

CPython 3.11 before 3.11.8 and 3.12 before 3.12.2 (and 3.10, which had the depth check backported but never
the fix) keep the AST constructor's recursion depth in interpreter-wide state (gh-106905): when two
threads parse at the same time (a garbage collection inside one parse can run Python code and switch threads),
one of them fails with ``SystemError: AST constructor recursion depth mismatch``. A service process parses in
many places it does not control: ``traceback`` (carets, when an error is logged), ``inspect.signature`` (pydantic
building a schema while answering a request), pytest's assertion rewriting. It surfaced as a 500 on
``GET /health`` while another thread parsed. Every caller that goes through ``ast.parse`` is serialised by one
re-entrant lock (a collection inside a parse may parse again in the same thread); parsing is rare and short
after start-up, so nothing waits in practice. The fixed releases (python/cpython#113035 and its backports
#113472, #113476) keep the depth per call; nothing is changed there.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading

#: The interpreters whose AST constructor shares its recursion depth between threads.
AFFECTED = sys.implementation.name == "cpython" and (
    sys.version_info < (3, 11, 8) or (3, 12) <= sys.version_info < (3, 12, 2))

_LOCK = threading.RLock()


def install() -> bool:
    """Serialise ``ast.parse`` in this process (idempotent); True when the interpreter needs it and it is in
    place."""
    if not AFFECTED:
        return False
    if getattr(ast.parse, "__sikd_serialised__", False):
        return True
    original = ast.parse

    @functools.wraps(original)
    def parse(*args, **kwargs):
        with _LOCK:
            return original(*args, **kwargs)

    parse.__sikd_serialised__ = True  # type: ignore[attr-defined]
    ast.parse = parse
    return True

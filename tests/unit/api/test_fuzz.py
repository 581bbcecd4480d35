"""Schemathesis over the OpenAPI schema: every operation with generated (and malformed) inputs, as the admin
and with a real dataset present, on SQLite and on PostgreSQL; no answer may be a 5xx, and every answer must
match the schema: a documented status code and content type, and a body of the documented shape (errors
included). Deselect with ``-m "not fuzz"``.

The budget is ``SIKD_FUZZ_EXAMPLES`` examples per operation and mode and database (default 60, positive and
negative; `.ci/run` uses 40: about 2 500 requests per database; most of the time is schemathesis generating
the cases); the generation is derandomised, so a CI failure reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
import schemathesis.generation.dictionaries  # noqa: F401 - see below
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

# schemathesis imports this module lazily, inside a hypothesis draw, deep in the stack; pytest rewrites it (a plugin's
# module) and CPython 3.11's AST constructor failed there once in the suite ("AST constructor recursion depth
# mismatch"), making the whole fuzz run "flaky". Imported here, at the top of the stack, it is never imported late.
# (The cause, two threads parsing at once, is closed for every parse of a service process by
# sikd_service/threadsafe_ast.py: it later failed GET /health the same way.)
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service_helpers import upload

EXAMPLES = int(os.environ.get("SIKD_FUZZ_EXAMPLES", "60"))
#: Every answer is checked against the schema: no 5xx, only documented status codes and content types, and a
#: body that matches the documented schema of its status (error bodies included).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

pytestmark = [pytest.mark.fuzz, pytest.mark.slow(seconds=90), pytest.mark.timeout(900)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """SQLite and PostgreSQL: ids and counts reach the database as bound parameters, and only PostgreSQL's
    columns have widths (32-bit ids were a 500 there, a 404 on SQLite)."""
    from sikd_service.config import Settings
    from sikd_service.db import dispose_engines, upgrade_database
    from tests.service_helpers import create_pg_database, drop_pg_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzzdb') / 'sikd.db'}"
    else:
        url = create_pg_database()
    try:
        upgrade_database(Settings(database_url=url, storage_dir=tmp_path_factory.mktemp("fuzzmigrate")))
        yield url
    finally:
        dispose_engines()
        if request.param == "postgres":
            drop_pg_database(url)


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str], calls: list[int], examples: int) -> list[str]:
    """Run ``examples`` generated cases of one operation; the 5xx answers (and exceptions) and the answers that
    break the schema that it met."""
    found: list[str] = []

    @given(operation.as_strategy(generation_mode=mode))
    @hyp_settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # noqa: ANN001 - a schemathesis Case
        calls[0] += 1
        try:
            response = case.call(headers=headers)
        except Exception as e:  # noqa: BLE001 - an unhandled server exception is a 5xx too
            found.append(f"{case.method} {case.formatted_path}: {type(e).__name__}: {e}")
            return
        if response.status_code >= 500:
            found.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            return
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                found.append(f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:200]}: "
                             f"{failure.title}: {str(failure.message)[:300]}")

    try:
        run()
    except Unsatisfiable:  # nothing to violate (an operation without parameters has no negative cases)
        assert mode == GenerationMode.NEGATIVE, operation.label
    return found


def test_no_operation_answers_5xx_or_breaks_the_schema(client, admin, phantom_zips, jobs, settings):
    """Positive (schema-valid) and negative (schema-violating) cases of every operation, as the admin. On
    PostgreSQL half the budget: the inputs are the same, what differs is how the database takes them."""
    examples = EXAMPLES if settings.sqlalchemy_url.startswith("sqlite") else max(1, EXAMPLES // 2)
    r = upload(client, admin, phantom_zips["vendor_b"], name="fuzz data")
    assert r.status_code == 201, r.text
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    calls = [0]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(op, mode, admin, calls, examples)
    print(f"fuzzed {len(operations)} operations with {calls[0]} requests ({examples} examples per operation and mode)")
    assert calls[0] >= len(operations) * min(examples, 2)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:400])

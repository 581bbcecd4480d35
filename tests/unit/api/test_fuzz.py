"""Schemathesis over the OpenAPI schema: every operation with generated (and malformed) inputs, as the admin
and with a real dataset present; no answer may be a 5xx. Deselect with ``-m "not fuzz"``.

The budget is ``SIKD_FUZZ_EXAMPLES`` examples per operation and mode (default 60, positive and negative:
about 3 700 requests, 35 s on 2 cores; `.ci/run` uses 40: about 2 500 requests, 23 s; most of the time is
schemathesis generating the cases); the generation is derandomised, so a CI failure reproduces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.service_helpers import upload

EXAMPLES = int(os.environ.get("SIKD_FUZZ_EXAMPLES", "60"))

pytestmark = [pytest.mark.fuzz, pytest.mark.slow(seconds=23), pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> Iterator[str]:
    """SQLite only (the Postgres variants of the API tests cover the queries; this covers the inputs)."""
    from sikd_service.config import Settings
    from sikd_service.db import dispose_engines, upgrade_database

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzzdb') / 'sikd.db'}"
    upgrade_database(Settings(database_url=url, storage_dir=tmp_path_factory.mktemp("fuzzmigrate")))
    yield url
    dispose_engines()


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str], calls: list[int]) -> list[str]:
    """Run ``EXAMPLES`` generated cases of one operation; the 5xx answers (and exceptions) it met."""
    found: list[str] = []

    @given(operation.as_strategy(generation_mode=mode))
    @hyp_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
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

    try:
        run()
    except Unsatisfiable:  # nothing to violate (an operation without parameters has no negative cases)
        assert mode == GenerationMode.NEGATIVE, operation.label
    return found


def test_no_operation_answers_5xx(client, admin, phantom_zips, jobs):
    """Positive (schema-valid) and negative (schema-violating) cases of every operation, as the admin."""
    r = upload(client, admin, phantom_zips["vendor_b"], name="fuzz data")
    assert r.status_code == 201, r.text
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    calls = [0]
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(op, mode, admin, calls)
    print(f"fuzzed {len(operations)} operations with {calls[0]} requests ({EXAMPLES} examples per operation and mode)")
    assert calls[0] >= len(operations) * 2
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:30])

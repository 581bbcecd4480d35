"""Status reads stay cheap: a fixed number of queries per request (no N+1), the caller's token resolved from a
short cache that a revocation empties at once, and as many API threads as database connections."""

from __future__ import annotations

import time

import pytest

from tests.service_helpers import count_queries, tiny_spec

pytestmark = pytest.mark.timeout(60)


def test_status_reads_make_a_fixed_number_of_queries(client, alice, datasets, settings):
    ids = [client.post("/experiments", json=tiny_spec(datasets, name=f"e{i}", seeds=[0, 1]), headers=alice).json()["id"]
           for i in range(3)]
    assert client.get("/me", headers=alice).status_code == 200  # the token is resolved, then cached
    with count_queries(settings) as q:
        r = client.get(f"/experiments/{ids[0]}", headers=alice)
    assert r.status_code == 200 and len(r.json()["stages"]) == 7
    assert len(q) == 1, q  # the experiment joined with its stages
    with count_queries(settings) as q:
        r = client.get("/experiments", headers=alice)
    assert r.json()["count"] == 3 and all(len(e["stages"]) == 7 for e in r.json()["data"])
    assert len(q) == 3, q  # count, rows, every row's stages in one query: no query per experiment
    with count_queries(settings) as q:
        r = client.get(f"/experiments/{ids[1]}/results", headers=alice)
    assert r.status_code == 409 and len(q) == 1, q


def test_status_answers_are_kept_a_moment_per_experiment_checked_per_caller_and_dropped_on_cancel(
        client, admin, alice, bob, datasets, settings):
    from sikd_service.db import session_scope
    from sikd_service.tables import Stage

    def forget() -> None:
        if getattr(client.app.state, "status_cache", None) is not None:
            del client.app.state.status_cache  # made again, with the TTL below, at the next read

    settings.status_cache_seconds = 2.0
    forget()
    try:
        eid = client.post("/experiments", json=tiny_spec(datasets, name="cached"), headers=alice).json()["id"]
        assert client.get("/me", headers=alice).status_code == 200 and client.get("/me", headers=bob).status_code == 200
        with count_queries(settings) as q:
            first = client.get(f"/experiments/{eid}", headers=alice)
            second = client.get(f"/experiments/{eid}", headers=alice)
            assert client.get(f"/experiments/{eid}", headers=admin).json() == first.json()  # an admin may see it
            assert client.get(f"/experiments/{eid}", headers=bob).status_code == 404  # cached, still not bob's
        assert first.status_code == 200 and second.content == first.content
        assert len(q) == 2, q  # the first read, and bob's refusal; the other two from memory
        with session_scope(settings) as s:  # a worker's write, elsewhere: seen once the answer expires
            s.get(Stage, first.json()["stages"][0]["id"]).progress = 0.5
        assert client.get(f"/experiments/{eid}", headers=alice).json()["stages"][0]["progress"] == 0.0
        time.sleep(2.1)
        assert client.get(f"/experiments/{eid}", headers=alice).json()["stages"][0]["progress"] == 0.5
        assert client.post(f"/experiments/{eid}/cancel", headers=alice).status_code == 200
        assert client.get(f"/experiments/{eid}", headers=alice).json()["status"] == "cancelled"  # at once
        assert client.delete(f"/experiments/{eid}", headers=alice).status_code == 204
        assert client.get(f"/experiments/{eid}", headers=alice).status_code == 404  # at once
    finally:
        settings.status_cache_seconds = 0
        forget()


def test_a_resolved_token_is_cached_and_revocation_takes_effect_at_once(client, admin, alice, bob, settings):
    me = client.get("/me", headers=alice).json()
    with count_queries(settings) as q:
        assert client.get("/me", headers=alice).json() == me
    assert q == []  # from the cache: no query
    token = client.post(f"/users/{me['id']}/tokens", headers=alice).json()["token"]
    second = {"Authorization": f"Bearer {token}"}
    assert client.get("/me", headers=second).json()["id"] == me["id"]
    bob_id = client.get("/me", headers=bob).json()["id"]
    assert client.delete(f"/users/{bob_id}/tokens", headers=alice).status_code == 404  # not hers
    assert client.get("/me", headers=bob).status_code == 200
    assert client.delete(f"/users/{me['id']}/tokens", headers=alice).status_code == 204
    for headers in (alice, second):  # both were cached; both stop at once
        r = client.get("/me", headers=headers)
        assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
    assert client.delete(f"/users/{bob_id}/tokens", headers=admin).status_code == 204  # an admin may
    assert client.get("/datasets", headers=bob).status_code == 401


def test_token_cache_expires_ignores_lookups_older_than_a_revocation_and_is_bounded(client, alice, settings):
    from api.auth import TokenCache
    from sikd_service import crud
    from sikd_service.db import session_factory

    sessions = session_factory(settings)
    digest = crud.hash_token(alice["Authorization"].split()[1])
    with sessions() as s:
        user = crud.get_user_by_digest(s, digest=digest)
        cache = TokenCache(ttl=0.2, max_entries=2)
        gen = cache.generation
        cache.put(digest, user, gen)
    with sessions() as s:
        hit = cache.get(s, digest)
        assert hit is not None and hit.name == "alice" and hit in s  # merged into this session, no query
    time.sleep(0.25)
    with sessions() as s:
        assert cache.get(s, digest) is None and len(cache) == 0  # expired
    cache.drop_user(user.id)  # a revocation between the lookup and put: the lookup's result is not kept
    cache.put(digest, user, gen)
    assert len(cache) == 0
    for i in range(3):
        cache.put(f"d{i}", user, cache.generation)
    assert len(cache) == 2  # oldest out
    off = TokenCache(ttl=0)
    off.put(digest, user, off.generation)
    assert len(off) == 0


def test_api_threads_match_the_database_pool(client, settings):
    import anyio.to_thread

    from sikd_service.db import get_engine

    assert settings.api_threads == settings.db_pool_size + settings.db_max_overflow == 20
    assert client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens) == 20
    pool = get_engine(settings).pool
    assert pool.size() == settings.db_pool_size and pool._max_overflow == settings.db_max_overflow
    from sikd_service.config import Settings

    memory = Settings(database_url="sqlite://", storage_dir=settings.storage_dir)  # its own pool kind, no sizes
    with get_engine(memory).connect() as conn:
        assert conn.exec_driver_sql("select 1").scalar() == 1

"""Users and bearer tokens: who may do what, and tokens stored only as hashes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.service_helpers import ADMIN_TOKEN, new_user

pytestmark = pytest.mark.timeout(60)


def test_me_and_missing_or_bad_token(client, admin):
    me = client.get("/me", headers=admin).json()
    assert me["name"] == "admin" and me["is_admin"] is True
    r = client.get("/me")
    assert r.status_code == 401 and "bearer token" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]
    assert client.get("/datasets", headers={"Authorization": "Basic abc"}).status_code == 401


def test_admin_creates_users_and_the_token_works_once_shown(client, admin, settings):
    r = client.post("/users", json={"name": "carol"}, headers=admin)
    assert r.status_code == 201
    body = r.json()
    assert body["user"]["name"] == "carol" and body["user"]["is_admin"] is False
    carol = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/me", headers=carol).json()["name"] == "carol"
    # Only the SHA-256 of a token is stored.
    from sikd_service.db import session_scope
    from sikd_service.tables import ApiToken

    with session_scope(settings) as s:
        hashes = s.scalars(select(ApiToken.token_hash)).all()
    assert body["token"] not in hashes and ADMIN_TOKEN not in hashes and len(hashes) == 2
    assert all(len(h) == 64 for h in hashes)
    r = client.post("/users", json={"name": "carol"}, headers=admin)
    assert r.status_code == 409 and "carol" in r.json()["detail"]
    assert client.post("/users", json={"name": "bad name!"}, headers=admin).status_code == 422


def test_only_admins_create_users_and_list_them(client, admin, alice):
    r = client.post("/users", json={"name": "mallory", "is_admin": True}, headers=alice)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert client.get("/users", headers=alice).status_code == 403
    listing = client.get("/users", headers=admin).json()
    assert listing["count"] == 2 and [u["name"] for u in listing["data"]] == ["admin", "alice"]


def test_tokens_for_self_or_by_admin_but_not_for_others(client, admin, alice, bob):
    alice_id = client.get("/me", headers=alice).json()["id"]
    bob_id = client.get("/me", headers=bob).json()["id"]
    r = client.post(f"/users/{alice_id}/tokens", headers=alice)
    assert r.status_code == 201
    second = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/me", headers=second).json()["id"] == alice_id
    assert client.get("/me", headers=alice).status_code == 200  # the first token still works
    r = client.post(f"/users/{bob_id}/tokens", headers=alice)
    assert r.status_code == 404 and r.json()["detail"] == f"user {bob_id} not found"
    r = client.post(f"/users/{bob_id}/tokens", headers=admin)
    assert r.status_code == 201 and r.json()["user"]["name"] == "bob"
    assert client.post("/users/999/tokens", headers=admin).status_code == 404


def test_new_admin_users_can_administer(client, admin):
    root2 = new_user(client, admin, "root2", is_admin=True)
    assert client.post("/users", json={"name": "dave"}, headers=root2).status_code == 201


def test_user_names_with_control_characters_or_markup_are_refused_by_name(client, admin):
    for name in ("evil\x00name", "line\nbreak", "bell\x07", "<script>", "rtl\u202eoverride"):
        r = client.post("/users", json={"name": name}, headers=admin)
        assert r.status_code == 422, (name, r.text)
        assert "the user name holds characters that are not allowed (U+" in r.json()["detail"], r.text
    assert client.get("/users", headers=admin).json()["count"] == 1

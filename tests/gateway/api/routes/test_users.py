from __future__ import annotations

from ...harness import Gateway


async def test_a_new_user_is_created_then_updated(gateway: Gateway) -> None:
    app = await gateway.register_app()

    created = await gateway.http.put(
        "/v1/users/alice",
        json={"email": "alice@example.com", "language": "ja"},
        headers=app.headers,
    )
    updated = await gateway.http.put(
        "/v1/users/alice",
        json={"email": "alice@new.example", "language": "en"},
        headers=app.headers,
    )

    assert created.status_code == 201
    assert created.json() == {"user_id": "alice", "email": "alice@example.com", "language": "ja"}
    assert updated.status_code == 200
    assert updated.json() == {"user_id": "alice", "email": "alice@new.example", "language": "en"}
    user = await gateway.conns.store.get_user(app.app_id, "alice")
    assert user is not None
    assert (user.email, user.language) == ("alice@new.example", "en")


async def test_users_belong_to_their_app(gateway: Gateway) -> None:
    one = await gateway.register_app()
    other = await gateway.register_app()
    await gateway.register_user(one, "bob")

    assert await gateway.conns.store.get_user(other.app_id, "bob") is None
    # The same user id in another app is another user.
    response = await gateway.http.put(
        "/v1/users/bob", json={"email": "bob@other.example"}, headers=other.headers
    )
    assert response.status_code == 201


async def test_invalid_users_are_refused(gateway: Gateway) -> None:
    app = await gateway.register_app()
    for body in ({"email": "not-an-email"}, {"email": "a@b.example", "language": "fr"}, {}):
        response = await gateway.http.put("/v1/users/carol", json=body, headers=app.headers)
        assert response.status_code == 422, body
        assert response.json()["detail"]
    assert await gateway.conns.store.get_user(app.app_id, "carol") is None


async def test_user_registration_needs_an_app_key(gateway: Gateway) -> None:
    app = await gateway.register_app()
    body = {"email": "dave@example.com"}
    forged = f"{app.app_id}.not-the-secret"
    for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"Authorization": "Bearer nodot"}):
        response = await gateway.http.put("/v1/users/dave", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert isinstance(response.json()["detail"], str)
    assert await gateway.conns.store.get_user(app.app_id, "dave") is None


async def test_an_app_reads_its_own_users_only(gateway: Gateway) -> None:
    app, other = await gateway.register_app(), await gateway.register_app()
    user_id = await gateway.register_user(app)

    mine = await gateway.http.get(f"/v1/users/{user_id}", headers=app.headers)
    theirs = await gateway.http.get(f"/v1/users/{user_id}", headers=other.headers)

    assert mine.status_code == 200
    assert mine.json() == {"user_id": user_id, "email": f"{user_id}@example.com", "language": "en"}
    assert theirs.status_code == 404
    assert theirs.json() == {"detail": f"no user '{user_id}'"}

from __future__ import annotations

from jobplane.security import hash_secret

from ...harness import ADMIN, Gateway


async def test_admin_registers_an_app_and_gets_its_key_once(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/v1/apps",
        json={
            "app_id": "photos-1",
            "backend_url": "http://backend.test:9000/jobs",
            "default_timeout_seconds": 120,
            "admin_emails": ["ops@photos.example"],
        },
        headers=ADMIN,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["app_id"] == "photos-1"
    assert body["api_key"].startswith("photos-1.")
    app = await gateway.conns.store.get_app("photos-1")
    assert app is not None
    assert app.backend_url == "http://backend.test:9000/jobs"
    assert app.default_timeout_seconds == 120
    assert app.admin_emails == ["ops@photos.example"]
    assert app.max_concurrency == 16
    # Only the digest is stored.
    assert app.api_key_hash == hash_secret(body["api_key"])
    raw = await gateway.conns.store.apps.find_one({"_id": "photos-1"})
    assert body["api_key"] not in str(raw)


async def test_the_new_key_authenticates_the_app(gateway: Gateway) -> None:
    app = await gateway.register_app()
    response = await gateway.http.put(
        "/v1/users/u1", json={"email": "u1@example.com"}, headers=app.headers
    )
    assert response.status_code == 201


async def test_registering_the_same_app_twice_is_a_conflict(gateway: Gateway) -> None:
    app = await gateway.register_app()
    response = await gateway.http.post(
        "/v1/apps", json={"app_id": app.app_id, "backend_url": "http://x.test/"}, headers=ADMIN
    )
    assert response.status_code == 409
    assert response.json() == {"detail": f"app '{app.app_id}' is registered already"}


async def test_app_registration_needs_the_admin_key(gateway: Gateway) -> None:
    app = await gateway.register_app()
    body = {"app_id": "intruder", "backend_url": "http://x.test/"}

    no_key = await gateway.http.post("/v1/apps", json=body)
    app_key = await gateway.http.post("/v1/apps", json=body, headers=app.headers)
    wrong = await gateway.http.post("/v1/apps", json=body, headers={"Authorization": "Bearer x"})

    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"] == "Bearer"
    assert app_key.status_code == 403
    assert wrong.status_code == 403
    for response in (no_key, app_key, wrong):
        assert isinstance(response.json()["detail"], str)
    assert await gateway.conns.store.get_app("intruder") is None


async def test_invalid_registrations_say_what_is_wrong(gateway: Gateway) -> None:
    cases = [
        {"app_id": "Bad_Id", "backend_url": "http://x.test/"},
        {"app_id": "ok", "backend_url": "not a url"},
        {"app_id": "ok", "backend_url": "http://x.test/", "default_timeout_seconds": 0},
        {"app_id": "ok", "backend_url": "http://x.test/", "admin_emails": ["nobody"]},
        {"app_id": "ok"},
    ]
    for body in cases:
        response = await gateway.http.post("/v1/apps", json=body, headers=ADMIN)
        assert response.status_code == 422, body
        assert response.json()["detail"], body
    assert await gateway.conns.store.get_app("ok") is None

"""The API documents itself: pages that work offline, every error answer described with its
body and an example, the limits in the schema, the backend call as a webhook."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from jobplane.events import JobRequested
from jobplane_dispatcher.dispatch import backend_body
from jobplane_gateway.backend_contract import DispatchRequest
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app
from pydantic import SecretStr

from .harness import ADMIN, Gateway, make_settings

_ATTRIBUTE_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
_JS_URL = re.compile(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""")


@pytest.fixture
async def offline_http() -> Any:
    """The app without any server: the docs need none."""
    app = create_app(Settings(admin_api_key=SecretStr("k")), conns=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_local_assets_and_those_are_served(
    offline_http: httpx.AsyncClient, page: str
) -> None:
    response = await offline_http.get(page)
    assert response.status_code == 200
    html = response.text
    urls = _ATTRIBUTE_URL.findall(html) + _JS_URL.findall(html)
    assert "/openapi.json" in urls
    assets = [u for u in urls if u != "/openapi.json"]
    assert assets, html
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
    assert (
        "googleapis" not in html
        and "cdn." not in html
        and "http" not in html.lower().replace("http-equiv", "")
    )
    for url in assets:
        asset = await offline_http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], url
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css"), url


async def _openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_every_error_answer_is_described_with_its_body_and_an_example(
    offline_http: httpx.AsyncClient,
) -> None:
    document = await _openapi(offline_http)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            errors = {int(c): r for c, r in operation["responses"].items() if int(c) >= 400}
            assert errors or path == "/healthz", f"{method} {path}: no error answers"
            for code, response in errors.items():
                content = response["content"]["application/json"]
                assert content["schema"]["$ref"].endswith(
                    ("/ErrorBody", "/ValidationErrorBody", "/CancelConflict")
                )
                assert content["example"]["detail"], f"{method} {path} {code}"
                if code == 503:
                    assert "Retry-After" in response["headers"]


async def test_each_route_names_the_errors_it_can_answer(offline_http: httpx.AsyncClient) -> None:
    document = await _openapi(offline_http)

    def codes(method: str, path: str) -> set[int]:
        responses = document["paths"][path][method]["responses"]
        return {int(c) for c in responses if int(c) >= 400}

    assert codes("post", "/v1/jobs") == {400, 401, 403, 409, 413, 415, 422, 503}
    assert codes("get", "/v1/jobs/{job_id}") == {401, 404, 422, 503}
    assert codes("post", "/v1/jobs/{job_id}/result") == {400, 401, 404, 409, 413, 415, 422, 503}
    assert codes("put", "/v1/users/{user_id}") == {400, 401, 415, 422, 503}
    assert codes("post", "/v1/apps") == {400, 401, 403, 409, 415, 422, 503}
    assert codes("patch", "/v1/admin/apps/{app_id}") == {400, 401, 403, 404, 415, 422, 503}
    assert codes("post", "/v1/jobs/{job_id}/cancel") == {401, 404, 409, 422, 503}
    assert codes("post", "/v1/admin/jobs/{job_id}/cancel") == {401, 403, 404, 409, 422, 503}
    assert codes("post", "/v1/dead/redrive") == {400, 401, 415, 422, 503}
    assert codes("post", "/v1/admin/dead/redrive") == {400, 401, 403, 415, 422, 503}
    for path in ("/v1/admin/jobs", "/v1/admin/apps", "/v1/admin/stats"):
        assert {401, 403, 503} <= codes("get", path), path


async def test_bounds_and_limits_are_in_the_schema(gateway: Gateway) -> None:
    document = await _openapi(gateway.http)
    schemas = document["components"]["schemas"]
    timeout = schemas["JobSubmit"]["properties"]["timeout_seconds"]["anyOf"][0]
    assert (timeout["minimum"], timeout["maximum"]) == (1, 86_400)
    assert schemas["JobSubmit"]["examples"]
    assert schemas["ResultIn"]["examples"]
    assert schemas["AppCreate"]["properties"]["max_concurrency"]["maximum"] == 10_000
    assert schemas["AppCreate"]["properties"]["admin_emails"]["maxItems"] == 50
    limit = next(
        p for p in document["paths"]["/v1/admin/jobs"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
    # The size limits are settings: the document states this gateway's values.
    assert f"{gateway.settings.max_payload_bytes} bytes" in document["info"]["description"]
    assert f"{gateway.settings.max_result_bytes} bytes" in document["info"]["description"]


async def test_the_configured_limits_reach_the_document(infra: Any, unique_id: str) -> None:
    settings = make_settings(infra, unique_id, unique_id, max_payload_bytes=4096)
    app = create_app(settings, conns=None)
    assert "at most 4096 bytes of JSON text" in (app.description or "")


async def test_the_backend_call_is_described_as_a_webhook(offline_http: httpx.AsyncClient) -> None:
    document = await _openapi(offline_http)
    assert document["openapi"].startswith("3.1")
    operation = document["webhooks"]["job-dispatch"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DispatchRequest"
    )
    assert {"200", "202", "400", "429", "500"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["X-Trace-Id", "Jobplane-Signature"]
    outcome = document["webhooks"]["job-outcome"]["post"]
    assert outcome["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OutcomeEvent"
    )
    assert {p["name"] for p in outcome["parameters"]} == {
        "Jobplane-Signature",
        "Jobplane-Webhook-Id",
        "Jobplane-Webhook-Attempt",
    }
    # The documented body is the one the dispatcher sends: same fields, and it validates.
    event = JobRequested(
        job_id="j1",
        app_id="photos",
        user_id="u1",
        attempt=2,
        trace_id="t1",
        job_type="thumbnail",
        payload='{"photo": "p1.jpg"}',
        timeout_seconds=60,
    )
    sent = backend_body(
        event,
        {"photo": "p1.jpg"},
        callback_url="http://gw.test/v1/jobs/j1/result",
        callback_token="tok",
        deadline=datetime(2026, 1, 1, tzinfo=UTC),
    )
    documented = document["components"]["schemas"]["DispatchRequest"]
    assert set(sent) == set(documented["properties"]) == set(documented["required"])
    DispatchRequest.model_validate(sent)


async def test_a_body_not_declared_json_is_415_and_stores_nothing(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    body = f'{{"user_id": "{user_id}", "job_type": "t", "payload": {{}}}}'
    expected = {
        "detail": "the request body must be JSON: send it with 'Content-Type: application/json'"
    }
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**app.headers, **({"Content-Type": content_type} if content_type else {})}
        submitted = await gateway.http.post("/v1/jobs", content=body, headers=headers)
        user = await gateway.http.put(
            "/v1/users/u2", content='{"email": "u2@example.com"}', headers=headers
        )
        patched = await gateway.http.patch(
            f"/v1/admin/apps/{app.app_id}",
            content='{"disabled": true}',
            headers={**ADMIN, **({"Content-Type": content_type} if content_type else {})},
        )
        for response in (submitted, user, patched):
            assert response.status_code == 415, (content_type, response.text)
            assert response.json() == expected
    assert await gateway.conns.store.jobs.count_documents({"app_id": app.app_id}) == 0
    assert await gateway.conns.store.get_user(app.app_id, "u2") is None
    stored = await gateway.conns.store.get_app(app.app_id)
    assert stored is not None and not stored.disabled
    # Bytes that are not text at all, declared JSON: 400, as documented.
    unreadable = await gateway.http.post(
        "/v1/jobs",
        content=b"\xff\xfe{",
        headers={**app.headers, "Content-Type": "application/json"},
    )
    assert unreadable.status_code == 400
    assert unreadable.json() == {"detail": "There was an error parsing the body"}
    # JSON with parameters, or a +json type, is JSON.
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        headers = {**app.headers, "Content-Type": content_type}
        response = await gateway.http.post("/v1/jobs", content=body, headers=headers)
        assert response.status_code == 202, (content_type, response.text)


async def test_the_operators_routes_explain_themselves(offline_http: httpx.AsyncClient) -> None:
    paths = (await _openapi(offline_http))["paths"]
    for path in ("/v1/dead/redrive", "/v1/admin/dead/redrive"):
        operation = paths[path]["post"]
        assert (
            "dry_run" in operation["description"] and "Idempotency-Key" in operation["description"]
        ), path
        assert {p["name"] for p in operation["parameters"]} == {"Idempotency-Key"}
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith("/RedriveRequest")
    for path in ("/v1/jobs/{job_id}/cancel", "/v1/admin/jobs/{job_id}/cancel"):
        operation = paths[path]["post"]
        assert "e-mail" in operation["description"], path
        conflict = operation["responses"]["409"]["content"]["application/json"]
        assert conflict["example"]["status"] == "succeeded"

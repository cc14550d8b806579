"""The demo backend over real HTTP: dispatch in, thumbnail out, result by callback."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobplane_client.webhooks import sign
from jobplane_demo.app import create_app
from jobplane_demo.config import DemoSettings
from PIL import Image
from pydantic import SecretStr

from tests.support import serve_http

from .conftest import CallbackReceiver

pytestmark = pytest.mark.timeout(60)


def dispatch_body(
    receiver: CallbackReceiver, job_id: str, payload: dict[str, Any], attempt: int = 1
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "app_id": "demo",
        "user_id": "user-1",
        "attempt": attempt,
        "job_type": "thumbnail",
        "payload": payload,
        "callback_url": receiver.callback_url(job_id),
        "callback_token": f"token-{job_id}-{attempt}",
        "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }


async def dispatch(
    demo_url: str,
    receiver: CallbackReceiver,
    job_id: str,
    payload: dict[str, Any],
    attempt: int = 1,
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{demo_url}/jobs",
            json=dispatch_body(receiver, job_id, payload, attempt),
            headers={"X-Trace-Id": f"trace-{job_id}"},
        )


def png_base64(width: int, height: int, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a_generated_image_becomes_a_thumbnail_reported_by_callback(
    demo_url: str, receiver: CallbackReceiver, demo_settings: DemoSettings
) -> None:
    payload = {"width": 400, "height": 200, "color": "red", "size": [100, 100]}
    response = await dispatch(demo_url, receiver, "job-gen", payload)
    assert response.status_code == 202

    callback = await receiver.wait_for("job-gen", 1)
    assert callback.headers["authorization"] == "Bearer token-job-gen-1"
    assert callback.headers["x-trace-id"] == "trace-job-gen"
    body = callback.body
    assert (body["attempt"], body["status"]) == (1, "succeeded")
    result = body["result"]
    assert (result["width"], result["height"], result["format"]) == (100, 50, "PNG")
    path = Path(result["thumbnail_path"])
    assert path.parent == demo_settings.output_dir
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (100, 50))
        assert image.convert("RGB").getpixel((10, 10)) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_an_uploaded_image_becomes_a_thumbnail_of_the_default_size(
    demo_url: str, receiver: CallbackReceiver, fmt: str
) -> None:
    job_id = f"job-upload-{fmt.lower()}"
    response = await dispatch(
        demo_url, receiver, job_id, {"image_base64": png_base64(300, 600, fmt)}
    )
    assert response.status_code == 202
    callback = await receiver.wait_for(job_id, 1)
    result = callback.body["result"]
    assert (result["width"], result["height"]) == (64, 128)
    with Image.open(result["thumbnail_path"]) as image:
        assert image.size == (64, 128)


async def test_fail_times_fails_the_first_attempts_then_succeeds(
    demo_url: str, receiver: CallbackReceiver
) -> None:
    payload = {"fail_times": 2, "width": 50, "height": 50}
    for attempt in (1, 2):
        await dispatch(demo_url, receiver, "job-flaky", payload, attempt)
        callback = await receiver.wait_for("job-flaky", attempt)
        assert callback.body == {
            "attempt": attempt,
            "status": "failed",
            "error": {"message": f"demo failure on attempt {attempt}", "retryable": True},
        }
        assert callback.headers["authorization"] == f"Bearer token-job-flaky-{attempt}"
    await dispatch(demo_url, receiver, "job-flaky", payload, 3)
    callback = await receiver.wait_for("job-flaky", 3)
    assert callback.body["status"] == "succeeded"
    assert callback.body["result"]["width"] == 50


async def test_fail_times_from_the_environment(
    receiver: CallbackReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_FAIL_TIMES", "1")
    monkeypatch.setenv("DEMO_OUTPUT_DIR", str(tmp_path))
    settings = DemoSettings()
    assert (settings.fail_times, settings.output_dir) == (1, tmp_path)
    async with serve_http(create_app(settings)) as url:
        await dispatch(url, receiver, "job-env", {}, 1)
        first = await receiver.wait_for("job-env", 1)
        await dispatch(url, receiver, "job-env", {}, 2)
        second = await receiver.wait_for("job-env", 2)
    assert first.body["status"] == "failed"
    assert second.body["status"] == "succeeded"


async def test_permanent_failure_is_not_retryable(
    demo_url: str, receiver: CallbackReceiver
) -> None:
    await dispatch(demo_url, receiver, "job-perm", {"permanent_failure": True})
    callback = await receiver.wait_for("job-perm", 1)
    assert callback.body["status"] == "failed"
    assert callback.body["error"]["retryable"] is False


@pytest.mark.parametrize(
    "payload",
    [
        {"image_base64": base64.b64encode(b"this is not an image").decode()},
        {"image_base64": "%%% not base64 %%%"},
        {"width": 10, "height": 10, "color": "no-such-colour"},
        {"size": "big"},
        {"width": -3},
    ],
)
async def test_a_bad_payload_is_reported_as_a_permanent_failure(
    demo_url: str, receiver: CallbackReceiver, payload: dict[str, Any]
) -> None:
    await dispatch(demo_url, receiver, "job-bad", payload)
    callback = await receiver.wait_for("job-bad", 1)
    assert callback.body["status"] == "failed"
    assert callback.body["error"]["retryable"] is False
    assert callback.body["error"]["message"].startswith("bad payload")


async def test_a_busy_gateway_is_called_again(demo_url: str, receiver: CallbackReceiver) -> None:
    receiver.fail_next = 2
    await dispatch(demo_url, receiver, "job-busy", {"width": 20, "height": 20})
    callback = await receiver.wait_for("job-busy", 1)
    assert callback.body["status"] == "succeeded"


async def test_a_malformed_dispatch_is_refused(demo_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{demo_url}/jobs", json={"job_id": "x"})
    assert response.status_code == 422


async def test_with_the_apps_secret_only_signed_dispatches_to_the_platform_are_done(
    receiver: CallbackReceiver, tmp_path: Path
) -> None:
    secret = "whsec_demo"
    settings = DemoSettings(
        output_dir=tmp_path, gateway_url=receiver.url, dispatch_secret=SecretStr(secret)
    )
    async with serve_http(create_app(settings)) as url, httpx.AsyncClient() as client:
        body = json.dumps(dispatch_body(receiver, "job-signed", {"width": 8, "height": 8}))
        unsigned = await client.post(f"{url}/jobs", content=body)
        assert unsigned.status_code == 422
        assert "not signed" in unsigned.json()["detail"]
        elsewhere = dispatch_body(receiver, "job-elsewhere", {})
        elsewhere["callback_url"] = "https://elsewhere.example/v1/jobs/job-elsewhere/result"
        raw = json.dumps(elsewhere).encode()
        misdirected = await client.post(
            f"{url}/jobs", content=raw, headers={"Jobplane-Signature": sign(secret, raw)}
        )
        assert misdirected.status_code == 422

        signed = await client.post(
            f"{url}/jobs",
            content=body,
            headers={"Jobplane-Signature": sign(secret, body.encode())},
        )
        assert signed.status_code == 202
        callback = await receiver.wait_for("job-signed", 1)
    assert callback.body["status"] == "succeeded"
    assert [c.job_id for c in receiver.callbacks] == ["job-signed"]

"""The results page reached from the outcome e-mails: the real services and SMTP sink, the
link taken from the mail as the user received it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jobplane.results_links import results_link

from tests.e2e.conftest import Platform, start_platform
from tests.gateway.harness import Gateway

SECRET = "results-link-test-secret"


@pytest.fixture(scope="module")
async def platform(infra: Any) -> AsyncIterator[Platform]:
    async with start_platform(infra, results_link_secret=SECRET) as running:
        yield running


async def mailed_link(platform: Platform, email: str) -> str:
    [mail] = await platform.wait_for_mails(email, 1)
    match = re.search(r"(http://\S+/results/\S+)", mail.text())
    assert match, mail.text()
    return match.group(1)


async def finished_job(
    platform: Platform, payload: dict[str, Any], language: str = "en"
) -> tuple[str, str]:
    """(job id, the link of its outcome mail)"""
    app = await platform.register_app()
    user_id, email = await platform.register_user(app, language=language)
    job_id = await platform.submit(app, user_id, payload)
    return job_id, await mailed_link(platform, email)


async def test_the_mailed_link_shows_the_job(platform: Platform) -> None:
    job_id, link = await finished_job(platform, {"behaviour": "succeed", "note": "private-x7"})
    assert urlsplit(link).path == f"/results/{job_id}"

    response = await platform.http.get(link)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    page = response.text
    assert job_id in page
    assert "Succeeded" in page
    assert f"{job_id}.png" in page  # the result summary
    assert 'id="timeline"' in page
    assert "private-x7" not in page  # the payload is the app's business, not the page's


async def test_a_dead_jobs_page_says_what_went_wrong(platform: Platform) -> None:
    _job_id, link = await finished_job(platform, {"behaviour": "permanent"})

    response = await platform.http.get(link)

    assert response.status_code == 200, response.text
    assert "Failed" in response.text and "the video is corrupt" in response.text


async def test_japanese_user_sees_japanese(platform: Platform) -> None:
    _job_id, link = await finished_job(platform, {"behaviour": "succeed"}, language="ja")

    response = await platform.http.get(link)

    assert response.status_code == 200
    assert response.headers["content-language"] == "ja"
    assert '<html lang="ja">' in response.text
    assert "ジョブの結果" in response.text and "成功" in response.text


async def test_tampered_other_job_and_expired_links_are_refused(platform: Platform) -> None:
    job_id, link = await finished_job(platform, {"behaviour": "succeed"})
    other_job, _ = await finished_job(platform, {"behaviour": "succeed"})
    query = parse_qs(urlsplit(link).query)
    expires, sig = int(query["expires"][0]), query["sig"][0]
    assert expires > time.time() + 29 * 86_400  # the default: 30 days

    async def status_of(path: str, params: dict[str, Any]) -> int:
        return (await platform.http.get(path, params=params)).status_code

    page = f"/results/{job_id}"
    assert await status_of(page, {"expires": expires, "sig": sig}) == 200
    tampered = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert await status_of(page, {"expires": expires, "sig": tampered}) == 403
    assert await status_of(page, {"expires": expires + 86_400, "sig": sig}) == 403
    assert await status_of(page, {}) == 403
    # The link of one job opens no other.
    assert await status_of(f"/results/{other_job}", {"expires": expires, "sig": sig}) == 403
    # A genuine link past its expiry is gone; one signed with another secret is forged.
    past = int(time.time()) - 1
    expired = urlsplit(results_link("http://x", SECRET, job_id, past))
    assert (await platform.http.get(f"{expired.path}?{expired.query}")).status_code == 410
    forged = urlsplit(results_link("http://x", "another-secret", job_id, expires))
    assert (await platform.http.get(f"{forged.path}?{forged.query}")).status_code == 403


async def test_no_results_pages_without_the_secret(gateway: Gateway) -> None:
    link = urlsplit(results_link("http://x", SECRET, "job-1", int(time.time()) + 60))

    response = await gateway.http.get(f"{link.path}?{link.query}")

    assert response.status_code == 404

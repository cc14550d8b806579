"""Submitting and querying jobs over the gateway's HTTP API, synchronously or with asyncio.

Both clients build the same requests and read the same answers (``_Requests``); only the
sending differs. Every call raises :class:`JobplaneError` for a refusal (4xx) and
:class:`JobplaneUnavailableError` for a 503 (nothing stored: try again after
``retry_after``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import BaseModel

from jobplane_client.errors import JobplaneError, JobplaneUnavailableError
from jobplane_client.models import Job, SubmittedJob, User

M = TypeVar("M", bound=BaseModel)
Language = Literal["en", "ja"]
DEFAULT_TIMEOUT_SECONDS = 10.0


class _Requests:
    """The API's requests and the reading of their answers, for either client."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def submit(
        self,
        user_id: str,
        job_type: str,
        payload: dict[str, Any],
        timeout_seconds: int | None,
        idempotency_key: str | None,
    ) -> tuple[str, str, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"user_id": user_id, "job_type": job_type, "payload": payload}
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return "POST", "/v1/jobs", body, headers

    @staticmethod
    def read(response: httpx.Response, model: type[M]) -> M:
        if response.status_code == 503:
            raise JobplaneUnavailableError(
                _detail(response), float(response.headers.get("Retry-After", "5"))
            )
        if response.is_error:
            raise JobplaneError(response.status_code, _detail(response))
        return model.model_validate(response.json())


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)


class JobplaneClient:
    """The app's side of Jobplane, synchronous::

    with JobplaneClient("https://jobs.example", api_key) as jobs:
        jobs.register_user("u-1", "hanako@example.com", language="ja")
        job = jobs.submit("u-1", "thumbnail", {"width": 800})
        print(jobs.wait(job.job_id).result)
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.Client | None = None,
    ) -> None:
        self._requests = _Requests(base_url, api_key)
        self._http = http or httpx.Client(base_url=self._requests.base_url, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, model: type[M], body: Any = None, **headers: str) -> M:
        response = self._http.request(
            method,
            self._requests.base_url + path,
            json=body,
            headers={**self._requests.headers, **headers},
        )
        return _Requests.read(response, model)

    def register_user(self, user_id: str, email: str, language: Language = "en") -> User:
        """Register (or update) a user's address and language: every outcome is mailed."""
        body = {"email": email, "language": language}
        return self._send("PUT", f"/v1/users/{user_id}", User, body)

    def submit(
        self,
        user_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> SubmittedJob:
        """Submit a job; the same ``idempotency_key`` again returns the same job."""
        method, path, body, headers = self._requests.submit(
            user_id, job_type, payload, timeout_seconds, idempotency_key
        )
        return self._send(method, path, SubmittedJob, body, **headers)

    def get(self, job_id: str) -> Job:
        """The job's status, attempts, result and webhook delivery."""
        return self._send("GET", f"/v1/jobs/{job_id}", Job)

    def wait(self, job_id: str, *, max_wait_seconds: float = 300.0, poll: float = 0.5) -> Job:
        """Poll until the job is finished (succeeded, dead or cancelled); TimeoutError after
        ``max_wait_seconds``. (Webhooks tell the app without polling.)"""
        deadline = time.monotonic() + max_wait_seconds
        while True:
            job = self.get(job_id)
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            time.sleep(poll)


class AsyncJobplaneClient:
    """:class:`JobplaneClient` for asyncio: the same calls, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._requests = _Requests(base_url, api_key)
        self._http = http or httpx.AsyncClient(base_url=self._requests.base_url, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self, method: str, path: str, model: type[M], body: Any = None, **headers: str
    ) -> M:
        response = await self._http.request(
            method,
            self._requests.base_url + path,
            json=body,
            headers={**self._requests.headers, **headers},
        )
        return _Requests.read(response, model)

    async def register_user(self, user_id: str, email: str, language: Language = "en") -> User:
        body = {"email": email, "language": language}
        return await self._send("PUT", f"/v1/users/{user_id}", User, body)

    async def submit(
        self,
        user_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> SubmittedJob:
        method, path, body, headers = self._requests.submit(
            user_id, job_type, payload, timeout_seconds, idempotency_key
        )
        return await self._send(method, path, SubmittedJob, body, **headers)

    async def get(self, job_id: str) -> Job:
        return await self._send("GET", f"/v1/jobs/{job_id}", Job)

    async def wait(self, job_id: str, *, max_wait_seconds: float = 300.0, poll: float = 0.5) -> Job:
        deadline = time.monotonic() + max_wait_seconds
        while True:
            job = await self.get(job_id)
            if job.finished:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            await asyncio.sleep(poll)

"""The gateway's API as the CLI calls it: the base URL, the keys, the errors made readable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ApiError(Exception):
    """The gateway refused, or could not be reached; ``str()`` says why in its words."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Config:
    url: str
    admin_key: str | None
    api_key: str | None
    kafka_bootstrap: str
    topic_prefix: str
    timeout: float = 30.0


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]


class Gateway:
    """Calls as the administrators (admin key) or as one app (its API key)."""

    def __init__(self, config: Config, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = httpx.Client(
            base_url=config.url.rstrip("/"), timeout=config.timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    @property
    def as_admin(self) -> bool:
        """Whether the admin routes are used: with an admin key, unless only an app key."""
        return self.config.admin_key is not None

    def _key(self, admin: bool) -> str:
        key = self.config.admin_key if admin else self.config.api_key
        if key:
            return key
        if admin:
            raise ApiError("this needs the admin key: set JOBPLANE_ADMIN_KEY or --admin-key")
        raise ApiError(
            "this needs a key: JOBPLANE_ADMIN_KEY (--admin-key) or an app's JOBPLANE_API_KEY"
            " (--api-key)"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        admin: bool,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        given = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(
                method,
                path,
                params=given,
                json=body,
                headers={"Authorization": f"Bearer {self._key(admin)}", **(headers or {})},
            )
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the gateway at {self.config.url}: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(
                f"{method} {path}: {response.status_code} {_detail(response)}",
                response.status_code,
            )
        return response.json()

    def pages(
        self, path: str, field: str, *, admin: bool, params: dict[str, Any], limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` items of a cursor-paged listing."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < limit:
            page = self.request(
                "GET",
                path,
                admin=admin,
                params={**params, "limit": min(200, limit - len(items)), "cursor": cursor},
            )
            items += page[field]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

"""What the client raises."""

from __future__ import annotations


class JobplaneError(Exception):
    """The platform refused a request: ``status_code`` and its ``detail``."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class JobplaneUnavailableError(JobplaneError):
    """503: nothing was stored; try again after ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(503, detail)
        self.retry_after = retry_after

"""One error hierarchy for the whole project.

Services raise these; the coordinator maps them to HTTP once (in `server.app`), so no
service knows about HTTP. Each error has a stable machine-readable `code`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GpunetError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.details = details


class InvalidInput(GpunetError):
    code = "invalid_input"
    status = 422


class Unauthenticated(GpunetError):
    code = "unauthenticated"
    status = 401


class Forbidden(GpunetError):
    code = "forbidden"
    status = 403


class NotFound(GpunetError):
    code = "not_found"
    status = 404


class Conflict(GpunetError):
    code = "conflict"
    status = 409


class Gone(GpunetError):
    code = "gone"
    status = 410


class RateLimited(GpunetError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str = "", retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class Blocked(GpunetError):
    code = "blocked"
    status = 403

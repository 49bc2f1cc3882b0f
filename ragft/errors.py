"""The one error shape of every ragft service: `{"error": {"type", "message", "param", "code"}}`,
OpenAI's `Error` (which requires `code`, a string or null; ragft sends null).

    RagftError                 500 internal_error
    ├── InvalidRequest         400 invalid_request
    │   └── UnknownRoute       400 invalid_request
    ├── Unauthorized           401 unauthorized (+ WWW-Authenticate)
    ├── Forbidden              403 forbidden
    ├── NotFound               404 not_found
    ├── Conflict               409 conflict
    ├── PayloadTooLarge        413 payload_too_large
    ├── UpstreamFailed         502 upstream_error
    ├── RetryLater                 (+ Retry-After)
    │   ├── RateLimited        429 rate_limited
    │   ├── UpstreamUnavailable 503 upstream_unavailable
    │   ├── Overloaded         503 overloaded
    │   └── ShuttingDown       503 shutting_down
    ├── NotConfigured          501 not_configured
    └── UpstreamTimeout        504 upstream_timeout

Handlers below turn these and FastAPI's validation errors into that shape; anything
unexpected becomes a 500 in the same shape in `ragft.web.RequestContextMiddleware`, so no
caller ever sees a stack trace. `error_message` reads the shape back, as clients meet it.

The command line has its own base, `UserFacingError`: every layer's errors that a command
reports (a bad eval set, a stack that did not start, an adapter refused) subclass it, and the
`ragft` app prints their message and exits 1 (ragft_cli/app.py).
"""

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ragft.logging import get_logger

log = get_logger(__name__)


class UserFacingError(Exception):
    """An error whose message is written for the person who ran the command: said as it is, no traceback."""


class RagftError(Exception):
    status_code = 500
    type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.type, self.message, self.param), self.status_code, headers=self.headers())


class InvalidRequest(RagftError):
    status_code = 400
    type = "invalid_request"


class UnknownRoute(InvalidRequest):
    pass


class Unauthorized(RagftError):
    status_code = 401
    type = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="ragft"'}


class Forbidden(RagftError):
    status_code = 403
    type = "forbidden"


class NotFound(RagftError):
    status_code = 404
    type = "not_found"


class Conflict(RagftError):
    status_code = 409
    type = "conflict"


class PayloadTooLarge(RagftError):
    status_code = 413
    type = "payload_too_large"


class UpstreamFailed(RagftError):
    status_code = 502
    type = "upstream_error"


class RetryLater(RagftError):
    """A refusal that may succeed later: `Retry-After` says when to try again."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(RetryLater):
    status_code = 429
    type = "rate_limited"


class UpstreamUnavailable(RetryLater):
    status_code = 503
    type = "upstream_unavailable"


class Overloaded(RetryLater):
    status_code = 503
    type = "overloaded"


class ShuttingDown(RetryLater):
    status_code = 503
    type = "shutting_down"


class NotConfigured(RagftError):
    """A feature this instance was started without (its setting is unset)."""

    status_code = 501
    type = "not_configured"


class UpstreamTimeout(RagftError):
    status_code = 504
    type = "upstream_timeout"


def error_body(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param, "code": None}}


def error_message(body: str | bytes, *, typed: bool = False) -> str | None:
    """The message of an error body: ragft's shape, which is OpenAI's and newer vLLM's
    (`{"error": {"type", "message"}}`), or older vLLM's (`{"type", "message"}` at the top); with
    `typed`, after its type (`not_found: ...`). None for any other body: the caller says what
    it shows instead."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or not error.get("message"):
        return None
    return f"{error.get('type')}: {error['message']}" if typed else str(error["message"])


def _field_path(loc: tuple[Any, ...]) -> str:
    # ("body", "documents", 0, "text") -> "documents.0.text"; the first item says where.
    return ".".join(str(p) for p in loc[1:]) or str(loc[0] if loc else "body")


async def _ragft_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagftError)
    if exc.status_code >= 500:
        log.warning("request failed", error_type=exc.type, error=exc.message)
    return exc.response()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return JSONResponse(error_body("invalid_request", f"request body is not valid JSON: {reason}", "body"), 422)
    param = _field_path(tuple(first.get("loc", ())))
    message = f"{param}: {first.get('msg', 'invalid value')}"
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problem(s))"
    return JSONResponse(error_body("invalid_request", message, param), 422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    return JSONResponse(
        error_body(type_, str(exc.detail)),
        exc.status_code,
        headers=dict(exc.headers or {}),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagftError, _ragft_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)

"""API errors: one exception per failure a caller can act on, in the OpenAI error shape
`{"error": {"message", "type", "code", "param"}}`. Framework-free, so that money, the ledger
and the worker dispatch can raise them; `http/errors.py` maps them to responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError


class ErrorDetail(BaseModel):
    """What went wrong, in OpenAI's error shape."""

    message: str = Field(description="a sentence for people; never holds a secret")
    type: str = Field(description="the OpenAI error type, e.g. invalid_request_error")
    code: str = Field(description="a stable machine-readable code, e.g. model_not_found")
    param: str | None = Field(description="the request field at fault, when there is one")


class ErrorBody(BaseModel):
    """The body of every error response: `{"error": {"message", "type", "code", "param"}}`
    (documented in the OpenAPI description; built by `ApiError.body`)."""

    error: ErrorDetail


class ApiError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        if code:
            self.code = code

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


class ClientGone(ApiError):
    """The client closed the connection before its response (nginx's 499; nobody reads it)."""

    status, type, code = 499, "client_closed_request", "client_closed_request"


class BadRequest(ApiError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(ApiError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class InsufficientCredit(ApiError):
    status, type, code = 402, "insufficient_quota", "insufficient_credit"


class Forbidden(ApiError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(ApiError):
    status, type, code = 404, "invalid_request_error", "not_found"


class Conflict(ApiError):
    status, type, code = 409, "invalid_request_error", "conflict"


class PayloadTooLarge(ApiError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class RateLimited(ApiError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class NoWorker(ApiError):
    status, type, code = 503, "service_unavailable", "no_worker_available"


class UpstreamFailed(ApiError):
    """The workers tried failed the job (or ran past its deadline)."""

    status, type, code = 503, "service_unavailable", "worker_failed"


REFUSAL = "refused:"  # the error type prefix of `refusal`


def refusal(code: str, message: str) -> PydanticCustomError:
    """A validation error (raise it in a validator) that leaves as a 400 with its own `code`
    and `message` rather than the generic `invalid_request` wording; no braces in `message`."""
    return PydanticCustomError(REFUSAL + code, message)


def invalid_body(errors: Sequence[Any]) -> BadRequest:
    """The 400 for a body that failed validation, naming the first offending field."""
    err = errors[0]
    if err.get("type") == "json_invalid":
        return BadRequest("The request body is not valid JSON.")
    param = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or None
    if str(err.get("type", "")).startswith(REFUSAL):
        return BadRequest(err["msg"], param=param, code=err["type"].removeprefix(REFUSAL))
    where = f" at '{param}'" if param else ""
    return BadRequest(f"Invalid request{where}: {err.get('msg', 'invalid value')}.", param=param)

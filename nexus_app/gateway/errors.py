"""API errors: one exception per failure a caller can act on, mapped in one place to the
OpenAI error shape `{"error": {"message", "type", "code", "param"}}`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

Body = TypeVar("Body", bound=BaseModel)


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


def error_response(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Response(
        orjson.dumps(exc.body()),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_LONG_DIGITS = re.compile(rb"\d{19}")  # integers outside the 64-bit range have 19+ digits


def _wide_integer(value: Any, path: str = "") -> str | None:
    """The path of the first integer outside the signed 64-bit range (orjson cannot
    serialize those, nor SQLite store them), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if INT64_MIN <= value <= INT64_MAX else path
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = _wide_integer(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


async def parse_body(request: Request, model: type[Body]) -> Body:
    """Validate a JSON body straight from its bytes (the hot routes skip FastAPI's slower
    body handling; their schema is added to the OpenAPI description separately).

    Free-form parts (tool schemas, tool calls, content parts) are re-serialized with orjson,
    so an integer outside the 64-bit range among the values the body keeps is a 400."""
    raw = await request.body()
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_body(exc.errors()) from None
    if _LONG_DIGITS.search(raw):  # rare: only then look for one among the values kept
        param = _wide_integer(body.model_dump(by_alias=True))
        if param is not None:
            raise BadRequest(f"Invalid request at '{param}': integers must fit in 64 bits.",
                             param=param)
    return body


def _allowed_methods(request: Request, exc: StarletteHTTPException) -> str:
    """The `Allow` header of a 405 (RFC 9110). Starlette's names the methods of the first
    route on the path only, and a path often has a route per method: add the methods the
    OpenAPI description lists for the path."""
    methods = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
    path = request.url.path
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can produce leaves in the OpenAI shape; never a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return error_response(invalid_body(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(NotFound("Unknown route.", code="unknown_route"))
        if exc.status_code == 405:
            err = BadRequest("Method not allowed on this route.", code="method_not_allowed")
            response = error_response(err)
            response.status_code = 405
            response.headers["Allow"] = _allowed_methods(request, exc)
            return response
        error = ApiError(str(exc.detail))
        error.status = exc.status_code
        return error_response(error)


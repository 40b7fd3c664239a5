"""API errors: one exception per failure a caller can act on, mapped in one place to the
OpenAI error shape `{"error": {"message", "type", "code", "param"}}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

Body = TypeVar("Body", bound=BaseModel)


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


def invalid_body(errors: Sequence[Any]) -> BadRequest:
    """The 400 for a body that failed validation, naming the first offending field."""
    err = errors[0]
    if err.get("type") == "json_invalid":
        return BadRequest("The request body is not valid JSON.")
    param = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or None
    where = f" at '{param}'" if param else ""
    return BadRequest(f"Invalid request{where}: {err.get('msg', 'invalid value')}.", param=param)


async def parse_body(request: Request, model: type[Body]) -> Body:
    """Validate a JSON body straight from its bytes (the hot routes skip FastAPI's slower
    body handling; their schema is added to the OpenAPI description separately)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc.errors()) from None


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can produce leaves in the OpenAI shape; never a stack trace."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return error_response(invalid_body(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(NotFound("Unknown route.", code="unknown_route"))
        if exc.status_code == 405:
            err = BadRequest("Method not allowed on this route.", code="method_not_allowed")
            response = error_response(err)
            response.status_code = 405
            return response
        error = ApiError(str(exc.detail))
        error.status = exc.status_code
        return error_response(error)


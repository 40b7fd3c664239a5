"""API errors as HTTP responses: every error the app produces leaves in the OpenAI shape
(never a stack trace), and JSON bodies of the hot routes are validated straight from bytes."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from nexus_app.gateway.errors import ApiError, BadRequest, NotFound, invalid_body
from nexus_app.gateway.ledger.store import LedgerUnavailable

Body = TypeVar("Body", bound=BaseModel)
LEDGER_RETRY_AFTER_S = 5  # PostgreSQL restarting or failing over takes seconds


class LedgerDown(ApiError):
    status, type, code = 503, "service_unavailable", "ledger_unavailable"


def ledger_down() -> LedgerDown:
    """The answer while the ledger's database cannot be reached: the one place its
    `LedgerUnavailable` becomes an API error (nothing was charged; the client retries)."""
    return LedgerDown("The ledger is unavailable for a moment; nothing was charged. "
                      "Try again shortly.", retry_after=LEDGER_RETRY_AFTER_S)


def error_response(exc: ApiError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Response(
        orjson.dumps(exc.body()),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


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

    @app.exception_handler(LedgerUnavailable)
    async def _ledger_down(_: Request, exc: LedgerUnavailable) -> Response:
        return error_response(ledger_down())

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


"""OpenAPI description, including the hot routes that are plain Starlette routes (they skip
FastAPI's request handling and parse their JSON body by hand, see `parse_body`).

Errors are documented as the gateway answers them: FastAPI's 422 becomes the 400 that
`install_error_handlers` sends, and every operation lists the error statuses it can answer,
each a shared response component with the OpenAI error body (`ErrorBody`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nexus_app.gateway.errors import ErrorBody

REF = "#/components/schemas/{model}"
RESPONSE_REF = "#/components/responses/{name}"

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer"}}}

# One Server-Sent Event (OpenAPI before 3.2 reads an event stream's schema as each event's).
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "description": "the event's name (Responses API only)"},
        "data": {"type": "string", "description": "a JSON object, or `[DONE]` at the end of a "
                 "Chat or Completions stream"},
    },
}

# Every error status the gateway answers: (component name, description, retry header).
ERRORS: dict[int, tuple[str, str, bool]] = {
    400: ("BadRequest", "Invalid request: a malformed body or parameter, or a value the gateway "
          "refuses (`invalid_request_error`; `param` names the field).", False),
    401: ("Unauthorized", "Missing, invalid or revoked API key, or a route that needs a wallet "
          "sign-in session (`authentication_error`).", False),
    402: ("InsufficientCredit", "The credit does not cover the request's maximum cost "
          "(`insufficient_quota`).", False),
    403: ("Forbidden", "The account may not do this (`permission_error`).", False),
    404: ("NotFound", "No such model or resource (`invalid_request_error`).", False),
    409: ("Conflict", "The request conflicts with the account's state, e.g. nothing to "
          "claim.", False),
    413: ("PayloadTooLarge", "The request body is larger than the gateway accepts.", False),
    429: ("RateLimited", "Too many requests (per API key, per address, or failed sign-ins) "
          "(`rate_limit_error`).", True),
    502: ("BadGateway", "The chain failed the payout; the earnings stay claimable.", False),
    503: ("ServiceUnavailable", "No worker serves the model now, all are busy, the job failed, "
          "or the chain is unavailable (`service_unavailable`).", True),
}

# What the middleware may answer on any route: the body size limit and the rate limits.
ANY_ROUTE_ERRORS = (413, 429)
_INFERENCE = (400, 401, 402, 404, 503)
# The further error statuses of each operation ("METHOD /path").
ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "POST /v1/auth/challenge": (400,),
    "POST /v1/auth/login": (400, 401),
    "GET /v1/gateway/proof": (400,),
    "GET /v1/balance": (401,),
    "GET /v1/keys": (401,),
    "POST /v1/keys": (400, 401),
    "DELETE /v1/keys/{key_id}": (401, 404),
    "GET /v1/deposits/intent": (400, 401, 503),
    "POST /v1/deposits": (400, 401, 403, 503),
    "GET /v1/deposits": (400, 401),
    "POST /v1/faucet": (400, 401, 403, 503),
    "GET /v1/wallet": (400, 401, 503),
    "POST /v1/workers/claim": (400, 401, 409, 502, 503),
    "GET /v1/workers/token-account": (400, 401, 503),
    "POST /v1/workers/token-account": (400, 401, 503),
    "GET /v1/workers/me": (401,),
    "GET /v1/workers/me/earnings": (400, 401),
    "GET /v1/models/{model_id}": (404,),
    "POST /v1/webhooks": (400, 401),
    "GET /v1/webhooks": (401,),
    "DELETE /v1/webhooks/{webhook_id}": (401, 404),
    "GET /v1/webhooks/{webhook_id}/deliveries": (400, 401, 404),
    "POST /v1/chat/completions": _INFERENCE,
    "POST /v1/completions": _INFERENCE,
    "POST /v1/embeddings": _INFERENCE,
    "POST /v1/responses": (*_INFERENCE, 403),  # 403: stored conversations full
    "GET /v1/responses/{response_id}": (401, 404),
    "GET /v1/responses/{response_id}/input_items": (400, 401, 404),
    "DELETE /v1/responses/{response_id}": (401, 404),
    "POST /v1/text/generate": (*_INFERENCE, 403),
    "DELETE /v1/text/history/{userid}": (401, 404),
}
# Operations that answer 202, with the 200 body, while the chain has not confirmed yet.
ACCEPTED = {"POST /v1/deposits", "POST /v1/workers/claim"}


@dataclass(frozen=True)
class _Documented:
    path: str
    body: type[BaseModel]
    summary: str
    tag: str


_documented: list[_Documented] = []


def json_post_route(
    path: str,
    endpoint: Callable[[Request], Awaitable[Response]],
    body: type[BaseModel],
    tag: str,
) -> Route:
    """A plain POST route whose JSON body is `body`, listed in the OpenAPI description."""
    summary = (endpoint.__doc__ or "").strip().splitlines()[0]
    _documented.append(_Documented(path, body, summary, tag))
    return Route(path, endpoint, methods=["POST"])


def _operation(route: _Documented) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=route.body.__name__)}
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    description = "The result object, as OpenAI's API returns it"
    if "stream" in route.body.model_fields:
        content["text/event-stream"] = {"schema": _SSE_EVENT}
        description += ", or Server-Sent Events when `stream` is true"
    return {
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": route.path.strip("/").replace("/", "_"),
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": description, "content": content}},
    }


def _error_components() -> dict[str, Any]:
    components = {}
    for name, description, retry in ERRORS.values():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
        }
        if retry:
            response["headers"] = _RETRY_AFTER
        components[name] = response
    return components


def _document_errors(spec: dict[str, Any]) -> None:
    """Replace FastAPI's 422 with the statuses each operation answers (see `ROUTE_ERRORS`)."""
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            key = f"{method.upper()} {path}"
            responses = operation["responses"]
            responses.pop("422", None)
            if key in ACCEPTED:
                responses["202"] = {**responses["200"],
                                    "description": "Accepted: waiting for the chain to confirm"}
            for status in sorted({*ROUTE_ERRORS.get(key, ()), *ANY_ROUTE_ERRORS}):
                name = ERRORS[status][0]
                responses[str(status)] = {"$ref": RESPONSE_REF.format(name=name)}
    schemas = spec["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    error_schema = ErrorBody.model_json_schema(ref_template=REF)
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    spec["components"]["responses"] = _error_components()


def install_openapi(app: FastAPI) -> None:
    """Generate the description once, with the plain routes and their bodies' schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for route in _documented:
                spec["paths"].setdefault(route.path, {})["post"] = _operation(route)
                schema = route.body.model_json_schema(ref_template=REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[route.body.__name__] = schema
            _document_errors(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

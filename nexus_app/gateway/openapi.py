"""OpenAPI description, including the hot routes that are plain Starlette routes (they skip
FastAPI's request handling and parse their JSON body by hand, see `parse_body`)."""

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

REF = "#/components/schemas/{model}"


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
    return {
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": route.path.strip("/").replace("/", "_"),
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"description": "JSON, or Server-Sent Events when `stream` is true"},
            "default": {"description": 'OpenAI error: {"error": {"message", "type", "code", '
                                       '"param"}}'},
        },
    }


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
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

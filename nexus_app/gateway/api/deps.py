"""What the routes share: the gateway serving a request (set on the app by `create_app`)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from nexus_app.gateway.service import Gateway


def gateway_of(request: HTTPConnection) -> Gateway:
    """The gateway serving `request`."""
    return request.app.state.gateway  # type: ignore[no-any-return]

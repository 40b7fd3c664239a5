"""What every client of this package shares: one error type and reading OpenAI-shaped errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the terminal app imports ClientError before its first frame, httpx after
    import httpx


class ClientError(Exception):
    """A server refused a call or could not be reached; `message` says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


NEXUS_PROBE_PATH = "/v1/network/stats"  # answered by NEXUS gateways, not by plain servers


def is_nexus_answer(response: httpx.Response) -> bool:
    """Whether the answer to `GET NEXUS_PROBE_PATH` comes from a NEXUS gateway."""
    return response.is_success and "workers_online" in response.text


def unreachable(what: str, base_url: str, exc: Exception) -> ClientError:
    """The error of a call to `what` (e.g. "the gateway") at `base_url` that got no answer."""
    return ClientError(f"cannot reach {what} at {base_url} ({type(exc).__name__})")


def error_of(response: httpx.Response, body: object) -> ClientError:
    """The ClientError of a failed response, with the server's message when it sent one in
    OpenAI's `{"error": {"message": ...}}` shape (or the status' reason otherwise)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
    elif isinstance(error, str):  # some OpenAI-compatible servers send a bare string
        message = error
    else:
        message = None
    return ClientError(str(message or response.reason_phrase or "request failed"),
                       response.status_code)

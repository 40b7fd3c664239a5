"""Chat with any OpenAI-compatible server (a NEXUS gateway, llama.cpp's server, vLLM,
OpenAI): the models it lists and streamed Chat Completions.

NEXUS fields (a model's price and workers, a reply's `usage.cost`) are read when present and
are None otherwise, so the same client works against servers that do not have them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import ValidationError

from nexus_app.client.chat_types import ModelInfo, Reply
from nexus_app.client.http import ClientError, error_of, unreachable
from nexus_app.contracts import BalanceView


def api_root(base_url: str) -> str:
    """`http://host:8080` and `http://host:8080/v1` both name the API at `.../v1`."""
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


class ChatClient:
    """Streaming chat against one OpenAI-compatible server."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.root = api_root(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # no read timeout while streaming: a model may think for long between tokens
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout, read=None)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def models(self) -> list[ModelInfo]:
        try:
            response = await self._http.get(f"{self.root}/models", timeout=10)
        except httpx.HTTPError as exc:
            raise unreachable("the server", self.root, exc) from None
        body = _json_or_none(response.content)
        if response.is_error:
            raise error_of(response, body)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ClientError(f"{self.root}/models did not return a model list")
        return [ModelInfo.from_json(item) for item in data
                if isinstance(item, dict) and "id" in item]

    async def balance(self) -> BalanceView:
        """The key's credit (`GET /v1/balance`): NEXUS gateways only."""
        try:
            response = await self._http.get(f"{self.root}/balance", timeout=10)
        except httpx.HTTPError as exc:
            raise unreachable("the server", self.root, exc) from None
        body = _json_or_none(response.content)
        if response.is_error or not isinstance(body, dict):
            raise error_of(response, body)
        try:
            return BalanceView.model_validate(body)
        except ValidationError:
            raise ClientError(f"{self.root}/balance did not return a NEXUS balance",
                              response.status_code) from None

    async def stream(self, model: str, messages: list[dict[str, str]],
                     max_tokens: int | None = None, *, temperature: float | None = None,
                     top_p: float | None = None) -> AsyncIterator[str | Reply]:
        """Yield the reply's text as it arrives, then one `Reply`. Closing the iterator early
        (e.g. cancelling the task) closes the request, which stops the generation. Sampling
        options left None are the server's defaults."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}}
        options = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}
        body.update({name: value for name, value in options.items() if value is not None})
        try:
            async with self._http.stream("POST", f"{self.root}/chat/completions",
                                         json=body) as response:
                if response.is_error:
                    raise error_of(response, _json_or_none(await response.aread()))
                async for item in _events(response):
                    yield item
        except httpx.HTTPError as exc:
            raise unreachable("the server", self.root, exc) from None


async def _events(response: httpx.Response) -> AsyncIterator[str | Reply]:
    finish_reason: str | None = None
    usage: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = _json_or_none(data.encode())
        if not isinstance(event, dict):
            continue
        if "error" in event:
            raise error_of(response, event)
        if isinstance(event.get("usage"), dict):
            usage = event["usage"]
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text
            finish_reason = choice.get("finish_reason") or finish_reason
    yield Reply(finish_reason, _int(usage.get("prompt_tokens")),
                _int(usage.get("completion_tokens")), _int(usage.get("cost")))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None

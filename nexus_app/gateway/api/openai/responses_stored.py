"""Stored Responses (`store: true`): a turn sealed under the caller's API key, continued with
`previous_response_id`, and `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`,
`DELETE /v1/responses/{id}`.

A stored response keeps the response object, its input items, and its context: the chat
messages it ran with (without its instructions, which OpenAI does not carry over) and its
output, which is what a turn naming it as `previous_response_id` continues from (sent to the
worker, and billed, as prompt tokens). Only the key that wrote it opens it: any other key's
request, of this account or another, finds nothing (a 404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from nexus_app.gateway.api.deps import ApiKeyCaller, GatewayDep
from nexus_app.gateway.api.openai.relay import error_event
from nexus_app.gateway.api.openai.responses_input import append_item
from nexus_app.gateway.api.openai.schemas import ChatCompletionRequest, ResponsesRequest
from nexus_app.gateway.conversations.crypto import ConversationKey
from nexus_app.gateway.errors import ApiError, BadRequest, NotFound
from nexus_app.gateway.http.auth import Caller
from nexus_app.gateway.service import Gateway
from nexus_app.ids import new_id

T = TypeVar("T")


def _key(caller: Caller) -> ConversationKey:
    if caller.conversation_key is None:  # api_key_caller always sets it
        raise BadRequest("Stored responses need an API key.")
    return caller.conversation_key


async def previous_context(gateway: Gateway, caller: Caller,
                           body: ResponsesRequest) -> list[dict[str, Any]]:
    """The messages of the stored response `body` continues (none without one); a 400 as
    OpenAI's for an id this key did not store (or that expired or was deleted)."""
    if body.previous_response_id is None:
        return []
    try:
        stored = await gateway.conversations.response(
            _key(caller), caller.account, body.previous_response_id)
    except NotFound:
        raise BadRequest(f"Previous response with id '{body.previous_response_id}' not found.",
                         param="previous_response_id",
                         code="previous_response_not_found") from None
    return stored["context"]  # type: ignore[no-any-return]


def input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as the items OpenAI lists, each with an id."""
    if isinstance(body.input, str):
        return [{"type": "message", "id": new_id("msg"), "status": "completed", "role": "user",
                 "content": [{"type": "input_text", "text": body.input}]}]
    return [{"id": item.get("id") or new_id("msg" if item.get("type", "message") == "message"
                                            else "item"), **item} for item in body.input]


def _context(chat: ChatCompletionRequest, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a next turn continues from: the turn's messages but its instructions, then its
    output as assistant messages."""
    messages = [m.model_dump(exclude_none=True) for m in chat.messages if m.role != "system"]
    for index, item in enumerate(output):
        append_item(messages, item, f"output.{index}")
    return messages


async def check_room(gateway: Gateway, caller: Caller, body: ResponsesRequest) -> None:
    if body.store:
        await gateway.conversations.check_room(caller.account,
                                               len(orjson.dumps(body.input)))


async def save(gateway: Gateway, caller: Caller, body: ResponsesRequest,
               chat: ChatCompletionRequest, response: dict[str, Any]) -> None:
    """Seal a finished turn under the caller's key (when `store` was asked)."""
    if not body.store:
        return
    payload = {"response": response, "input_items": input_items(body),
               "context": _context(chat, response["output"])}
    await gateway.conversations.save_response(
        _key(caller), (caller.account, caller.key_id or ""), response["id"], payload)


async def saving(events: AsyncIterator[bytes], final: Callable[[], T | None],
                 store: Callable[[T], Awaitable[Any]]) -> AsyncIterator[bytes]:
    """A stream's events, with what `final` returns once the stream finished (the response,
    the turn) stored before its last events go out, so that a next request finds it."""
    saved = False
    async for data in events:
        response = final()
        if response is not None and not saved:
            saved = True
            try:
                await store(response)
            except ApiError as error:  # the quota filled meanwhile
                yield error_event(error)
        yield data


router = APIRouter()


@router.get("/v1/responses/{response_id}", tags=["inference"])
async def get_response(response_id: str, caller: ApiKeyCaller,
                       gateway: GatewayDep) -> Response:
    """A stored response (`store: true`), written with this key."""
    stored = await gateway.conversations.response(_key(caller), caller.account, response_id)
    return Response(orjson.dumps(stored["response"]), media_type="application/json")


@router.get("/v1/responses/{response_id}/input_items", tags=["inference"])
async def list_input_items(response_id: str, caller: ApiKeyCaller, gateway: GatewayDep,
                           limit: int = Query(20, ge=1, le=100),
                           order: Literal["asc", "desc"] = "desc",
                           after: str | None = Query(None, max_length=256)) -> Response:
    """The input items of a stored response, as a list page."""
    stored = await gateway.conversations.response(_key(caller), caller.account, response_id)
    items: list[dict[str, Any]] = stored["input_items"]
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return Response(orjson.dumps({
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}),
        media_type="application/json")


@router.delete("/v1/responses/{response_id}", tags=["inference"])
async def delete_response(response_id: str, caller: ApiKeyCaller,
                          gateway: GatewayDep) -> Response:
    """Delete a stored response written with this key."""
    await gateway.conversations.delete_response(_key(caller), caller.account, response_id)
    return Response(orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                    media_type="application/json")

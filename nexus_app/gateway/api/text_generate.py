"""`POST /v1/text/generate` (the Nexusify text API) and `DELETE /v1/text/history/{userid}`.

A plain `prompt` or `messages`, with `systemInstruction`, runs as a chat job. With `userid`,
the gateway keeps the conversation: the label's earlier turns (the most recent
`conversation_history_messages` messages) go to the worker before the new ones, and are
billed as prompt tokens like any others; the new turn is sealed under the caller's API key
(`gateway/conversations/`) before the reply's last bytes go out, so the next request sees it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError, model_validator

from nexus_app.gateway.api.deps import ApiKeyCaller, GatewayDep, api_key_caller, gateway_of
from nexus_app.gateway.api.openai.chat import ChatShapes
from nexus_app.gateway.api.openai.chat_job import open_chat
from nexus_app.gateway.api.openai.relay import collect, event_stream, usage_body
from nexus_app.gateway.api.openai.responses_stored import saving
from nexus_app.gateway.api.openai.schemas import TOKENS_MAX, ChatCompletionRequest, ChatMessage
from nexus_app.gateway.conversations.crypto import ConversationKey
from nexus_app.gateway.errors import BadRequest, invalid_body
from nexus_app.gateway.http.auth import Caller
from nexus_app.gateway.http.errors import parse_body
from nexus_app.gateway.http.openapi import json_post_route
from nexus_app.gateway.service import Gateway
from nexus_app.protocol import Chunk, Done

USERID = Field(None, min_length=1, max_length=256, description="an opaque label of the "
               "conversation the gateway keeps for this key (sealed under it)")


class TextGenerateRequest(BaseModel):
    """Generate text from a `prompt` or chat `messages` (Nexusify's text API)."""

    model: str | None = Field(None, min_length=1, max_length=256,
                              description="default: the first model served now, by name")
    prompt: str | None = Field(None, min_length=1)
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    systemInstruction: str | None = Field(None, description="a system message put first")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(300, ge=1, le=TOKENS_MAX)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    userid: str | None = USERID

    @model_validator(mode="after")
    def _one_input(self) -> TextGenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send either 'prompt' or 'messages'")
        return self

    def turn(self) -> list[dict[str, Any]]:
        """This request's own messages (what a `userid` history keeps of it)."""
        if self.prompt is not None:
            return [{"role": "user", "content": self.prompt}]
        return [m.model_dump(exclude_none=True) for m in self.messages or []]


class HistoryDeleted(BaseModel):
    success: bool
    userid: str
    deleted: int = Field(description="the turns deleted")


def _model(gateway: Gateway, body: TextGenerateRequest) -> str:
    if body.model:
        return body.model
    served = sorted(gateway.coordinator.model_cards())
    if not served:
        raise BadRequest("No model is served now; name one in 'model'.", param="model")
    return served[0]


def _key(caller: Caller) -> ConversationKey:
    if caller.conversation_key is None:  # api_key_caller always sets it
        raise BadRequest("A userid needs an API key.", param="userid")
    return caller.conversation_key


def _chat(body: TextGenerateRequest, model: str, history: list[dict[str, Any]]
          ) -> ChatCompletionRequest:
    system = [{"role": "system", "content": body.systemInstruction}] \
        if body.systemInstruction else []
    try:
        return ChatCompletionRequest.model_validate({
            "model": model, "messages": [*system, *history, *body.turn()],
            "max_tokens": body.max_tokens, "temperature": body.temperature,
            "top_p": body.top_p, "stop": body.stop})
    except ValidationError as exc:
        raise invalid_body(exc.errors()) from None


class _Turn:
    """One request's conversation: the history sent with it, and its saving once the reply
    is whole."""

    def __init__(self, gateway: Gateway, caller: Caller, body: TextGenerateRequest) -> None:
        self.gateway, self.caller, self.body = gateway, caller, body
        self.history: list[dict[str, Any]] = []
        self.stored = 0  # messages of the history before this turn
        self.saved = False

    async def load(self) -> None:
        body, conversations = self.body, self.gateway.conversations
        if body.userid is None:
            return
        account = self.caller.account
        await conversations.check_room(account, len(orjson.dumps(body.turn())))
        history = await conversations.history(_key(self.caller), account, body.userid)
        self.history = history[-conversations.history_messages:] if history else []
        self.stored = len(history)

    async def save(self, completion: str) -> int:
        """Seal the turn into the history; returns the history's length after it."""
        if self.body.userid is None or self.saved:
            return 0
        self.saved = True
        messages = [*self.body.turn(), {"role": "assistant", "content": completion}]
        await self.gateway.conversations.add_turn(
            _key(self.caller), (self.caller.account, self.caller.key_id or ""),
            self.body.userid, messages)
        return self.stored + len(messages)


class _StreamShapes(ChatShapes):
    """Chat chunks that also keep the reply's text, and note when it ended normally."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.text: list[str] = []
        self.done: Done | None = None

    def chunk(self, event: Chunk) -> bytes | None:
        self.text.append(event.text)
        return super().chunk(event)

    def closing(self, done: Done, usage: dict[str, int]) -> bytes:
        self.done = done
        return super().closing(done, usage)


async def text_generate(request: Request) -> Response:
    """Generate text (set `stream` for chat-chunk Server-Sent Events ending with [DONE])."""
    gateway = gateway_of(request)
    caller = await api_key_caller(request)
    body = await parse_body(request, TextGenerateRequest)
    model = _model(gateway, body)
    turn = _Turn(gateway, caller, body)
    await turn.load()
    chat = _chat(body, model, turn.history)
    ticket = await open_chat(gateway, caller, chat)
    if body.stream:
        shapes = _StreamShapes(model)
        response = await event_stream(gateway, ticket, shapes)
        # the turn is kept before the stream's closing events go out
        response.events = saving(response.events, lambda: shapes.done,
                                 lambda _: turn.save("".join(shapes.text)))
        return response
    chunks, _ = await collect(gateway, ticket, request.receive)
    completion = "".join(chunk.text for chunk in chunks)
    history_length = await turn.save(completion)
    balance = await gateway.store.balance(caller.account)
    return Response(orjson.dumps({
        "success": True, "model": model, "completion": completion, "userid": body.userid,
        "historyLength": history_length, "messagesUsed": len(chat.messages),
        "usage": usage_body(ticket), "user": {"usageRemaining": balance.available}}),
        media_type="application/json")


routes = [json_post_route("/v1/text/generate", text_generate, TextGenerateRequest, "inference")]
router = APIRouter()


@router.delete("/v1/text/history/{userid}", tags=["inference"])
async def delete_history(userid: str, caller: ApiKeyCaller,
                         gateway: GatewayDep) -> HistoryDeleted:
    """Delete the conversation history this key keeps under `userid`."""
    deleted = await gateway.conversations.forget(_key(caller), caller.account, userid)
    return HistoryDeleted(success=True, userid=userid, deleted=deleted)

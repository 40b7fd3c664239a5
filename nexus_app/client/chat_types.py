"""What a chat server lists and answers, as the terminal app shows it: models with their
NEXUS price, how a reply ended, and how much history fits a model's context. No HTTP here
(`chat.py` is the client), so the chat screen draws without loading httpx or pydantic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ListedPrice:
    """A NEXUS model's price as `/v1/models` lists it, in token base units (the gateway's
    own `Price` has no decimals)."""

    per_request: int
    input_per_million: int
    output_per_million: int
    decimals: int


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_length: int | None = None
    workers: int | None = None
    price: ListedPrice | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> ModelInfo:
        pricing = item.get("pricing")
        price = None
        if isinstance(pricing, dict):
            try:
                price = ListedPrice(int(pricing["per_request"]),
                                    int(pricing["input_per_million"]),
                                    int(pricing["output_per_million"]), int(pricing["decimals"]))
            except (KeyError, TypeError, ValueError):
                price = None
        context = item.get("context_length")
        workers = item.get("workers")
        return cls(str(item["id"]), context if isinstance(context, int) else None,
                   workers if isinstance(workers, int) else None, price)


@dataclass(frozen=True)
class Reply:
    """How a streamed reply ended: its reason, token counts, and (NEXUS) its cost."""

    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: int | None = None  # token base units


CHARS_PER_TOKEN = 3  # a cautious estimate (English text runs about 4 characters a token)
MESSAGE_OVERHEAD_TOKENS = 8  # the chat template's markers around each message


def fit_history(messages: list[dict[str, str]], context_length: int | None,
                reply_tokens: int) -> list[dict[str, str]]:
    """The latest `messages` that fit in `context_length` tokens with room left for a reply of
    `reply_tokens`, estimated from their length (no tokenizer here). The last message is
    always kept; with no known context length, all are."""
    if context_length is None:
        return messages
    budget = context_length - reply_tokens
    kept: list[dict[str, str]] = []
    for message in reversed(messages):
        cost = len(message["content"]) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS
        if kept and cost > budget:
            break
        budget -= cost
        kept.append(message)
    return kept[::-1]

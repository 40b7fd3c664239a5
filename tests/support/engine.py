"""The engine on the real model, driven by hand: a chat's prompt tokens and a request's events."""

from __future__ import annotations

import time

from nexus_app.worker.events import Embedded, Failed, Finished, Started, Stream, Text
from nexus_app.worker.llamacpp import Model
from nexus_app.worker.models import bundled_model_path, describe
from nexus_app.worker.prompts import ChatTemplate


def chat_tokens(model: Model, messages: list[dict[str, str]]) -> list[int]:
    """The prompt tokens the worker builds for a chat, with the model's own template."""
    path = bundled_model_path()
    assert path is not None
    template = ChatTemplate(describe(path).chat_template, model.bos_text, model.eos_text)
    text = template.prompt({"messages": messages}).text
    return model.tokenize(text, add_special=False, parse_special=True)


async def collect(stream: Stream) -> tuple[str, Finished | Failed | Embedded]:
    parts: list[str] = []
    async for event in stream:
        if isinstance(event, Text):
            parts.append(event.text)
        elif not isinstance(event, Started):
            return "".join(parts), event
    raise AssertionError("the stream ended without a final event")


def far() -> float:
    return time.monotonic() + 120

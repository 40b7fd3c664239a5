"""Log probabilities relayed from a worker, in the shapes of OpenAI's two APIs.

Chat completions carry `{"content": [token, ...], "refusal": null}`; legacy completions carry
parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as token -> logprob maps,
`text_offset`). A worker may send more alternatives than asked; only those asked are shown.
"""

from __future__ import annotations

from typing import Any

from nexus_app.protocol import Chunk, TokenLogprob


def logprobs_of(chunks: list[Chunk]) -> list[TokenLogprob]:
    """The log probabilities of a collected job's tokens, in order."""
    return [token for chunk in chunks for token in chunk.logprobs or ()]


def chat_logprobs(tokens: list[TokenLogprob], top: int) -> dict[str, Any]:
    """The `logprobs` of a chat choice (or of one stream chunk)."""
    content = []
    for token in tokens:
        entry = token.model_dump(exclude={"top_logprobs"})
        entry["top_logprobs"] = [alt.model_dump() for alt in token.top_logprobs[:top]]
        content.append(entry)
    return {"content": content, "refusal": None}


def completion_logprobs(tokens: list[TokenLogprob], top: int, offset: int) -> dict[str, Any]:
    """The `logprobs` of a legacy completion choice; `offset` is where its text starts."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.token)
    return {
        "tokens": [token.token for token in tokens],
        "token_logprobs": [token.logprob for token in tokens],
        "top_logprobs": [{alt.token: alt.logprob for alt in token.top_logprobs[:top]}
                         for token in tokens],
        "text_offset": offsets,
    }

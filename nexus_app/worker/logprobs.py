"""Log probabilities of sampled tokens, in the shape OpenAI's `logprobs` use.

They are the model's own distribution (log-softmax of the raw logits), before temperature,
top-k/top-p, penalties or a grammar shaped the choice, as OpenAI reports them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nexus_app.protocol import MAX_TOP_LOGPROBS, TokenLogprob, TopLogprob
from nexus_app.worker.llamacpp import Model

LOGPROB_FLOOR = -9999.0  # what OpenAI reports for a probability too small to represent


def token_logprob(model: Model, logits: npt.NDArray[np.float32], token: int, top: int
                  ) -> TokenLogprob:
    """The chosen token's log probability and the `top` most likely tokens' (best first)."""
    values = logits.astype(np.float64)
    peak = float(values.max())
    log_total = peak + float(np.log(np.exp(values - peak).sum()))
    top = min(top, MAX_TOP_LOGPROBS, len(values))
    best: list[int] = []
    if top:
        candidates = np.argpartition(values, -top)[-top:]
        best = sorted(candidates.tolist(), key=lambda t: -values[t])
    alternatives = [_entry(model, t, float(values[t]) - log_total) for t in best]
    chosen = _entry(model, token, float(values[token]) - log_total)
    return TokenLogprob(**chosen.model_dump(), top_logprobs=alternatives)


def _entry(model: Model, token: int, logprob: float) -> TopLogprob:
    raw = model.piece(token)
    return TopLogprob(token=raw.decode("utf-8", "backslashreplace"),
                      logprob=max(LOGPROB_FLOOR, logprob), bytes=list(raw))

"""A chat prompt's tokens, reusing the tokens of the turns already tokenized.

With `parse_special`, llama.cpp first cuts a prompt's text at every special token, then
tokenizes each stretch of plain text on its own. A chat's next prompt is its previous one plus
the new messages, and the chat template ends every message with an end-of-turn special token:
cut at those, every piece but the new messages' was tokenized for an earlier turn. A 900-token
chat takes ~1.6 ms to tokenize whole, before its first token can be decoded; its pieces, cached,
take only the new part's time.

The pieces give exactly llama.cpp's tokens only where llama.cpp cuts at the same places: a BPE
vocabulary (SentencePiece ones treat a text's start specially), and an end-of-turn token that is
a special token of its own (tokenized alone, it is that token), strips no whitespace around it,
and that no other special token of at least its length overlaps (llama.cpp matches the longest
ones first). `PromptTokenizer.cuts` is empty otherwise, and the whole text is tokenized.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections import OrderedDict

import llama_cpp

from nexus_app.worker.llamacpp import Model

SPECIAL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
STRIPS = llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP | llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP
# text of the pieces kept, in all: ~250,000 tokens (4 bytes each), more than a worker's slots hold
CACHED_CHARS = 1024 * 1024


class PromptTokenizer:
    """Tokenizes chat prompts (special tokens parsed, none added) piece by piece, keeping the
    most recently used pieces' tokens. Safe to call from several threads."""

    def __init__(self, model: Model, cached_chars: int = CACHED_CHARS) -> None:
        self.model = model
        self.cuts = safe_cuts(model)
        self._cut_at = re.compile("|".join(map(re.escape, self.cuts))) if self.cuts else None
        self._pieces: OrderedDict[str, array[int]] = OrderedDict()
        self._chars = 0
        self._limit = cached_chars
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        if self._cut_at is None:
            return self._whole(text)
        tokens: list[int] = []
        start = 0
        for match in self._cut_at.finditer(text):
            tokens += self._piece(text[start:match.end()])
            start = match.end()
        if start < len(text):
            tokens += self._piece(text[start:])
        return tokens

    def _whole(self, text: str) -> list[int]:
        return self.model.tokenize(text, add_special=False, parse_special=True)

    def _piece(self, piece: str) -> list[int] | array[int]:
        with self._lock:
            kept = self._pieces.get(piece)
            if kept is not None:
                self._pieces.move_to_end(piece)
                return kept
        tokens = self._whole(piece)
        if len(piece) <= self._limit:
            with self._lock:
                if piece not in self._pieces:
                    self._pieces[piece] = array("i", tokens)
                    self._chars += len(piece)
                while self._chars > self._limit:
                    old, _ = self._pieces.popitem(last=False)
                    self._chars -= len(old)
        return tokens


def safe_cuts(model: Model) -> tuple[str, ...]:
    """The texts of the model's end-of-turn tokens at which a prompt may be cut (see the
    module's docstring); empty when there is none."""
    vocab = model.vocab
    if llama_cpp.llama_vocab_type(vocab) != llama_cpp.LLAMA_VOCAB_TYPE_BPE:
        return ()
    special = [model.token_text(token) for token in range(model.n_vocab)
               if llama_cpp.llama_vocab_get_attr(vocab, token) & SPECIAL]
    cuts = []
    for token in {llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)} - {-1}:
        text = model.token_text(token)
        attributes = llama_cpp.llama_vocab_get_attr(vocab, token)
        if (text and attributes & SPECIAL and not attributes & STRIPS
                and model.tokenize(text, add_special=False, parse_special=True) == [token]
                and not any(_overlap(other, text) for other in special
                            if other != text and len(other) >= len(text))):
            cuts.append(text)
    return tuple(sorted(cuts))


def _overlap(other: str, text: str) -> bool:
    """Whether `other` contains `text`, or they overlap (one's end is the other's start)."""
    return text in other or any(
        other.endswith(text[:size]) or other.startswith(text[-size:])
        for size in range(1, len(text)))

"""A chat prompt tokenized piece by piece, each piece ending at an end-of-turn token, on the
real SmolLM2 model: the tokens must be llama.cpp's own for the whole text, and a chat's next
turn must tokenize only its new messages."""

from __future__ import annotations

import random

import pytest

from nexus_app.worker.llamacpp import Model
from nexus_app.worker.models import bundled_model_path, describe
from nexus_app.worker.prompt_tokens import PromptTokenizer, _overlap
from nexus_app.worker.prompts import ChatTemplate

# plain text, whitespace, special tokens, and pieces of special tokens that are not ones
FRAGMENTS = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|im", "_end|>", "<", "|", ">",
             " ", "  ", "\n", "\n\n", "\t", "a", "word", " word", "é", "🙂", "1", "12"]


def whole(model: Model, text: str) -> list[int]:
    return model.tokenize(text, add_special=False, parse_special=True)


@pytest.fixture
def tokenizer(model: Model) -> PromptTokenizer:
    return PromptTokenizer(model)


def test_smollm2_is_cut_at_its_end_of_turn_tokens(tokenizer: PromptTokenizer) -> None:
    assert tokenizer.cuts == ("<|endoftext|>", "<|im_end|>")


def test_random_texts_give_llama_cpps_tokens(tokenizer: PromptTokenizer, model: Model) -> None:
    rnd = random.Random(20)
    for _ in range(2000):
        text = "".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randint(0, 40)))
        assert tokenizer.tokenize(text) == whole(model, text), repr(text)


def test_a_chats_next_turn_tokenizes_only_its_new_messages(
        tokenizer: PromptTokenizer, model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    path = bundled_model_path()
    assert path is not None
    template = ChatTemplate(describe(path).chat_template, model.bos_text, model.eos_text)
    read: list[str] = []
    tokenize = model.tokenize

    def counted(text: str, add_special: bool, parse_special: bool) -> list[int]:
        read.append(text)
        return tokenize(text, add_special, parse_special)

    monkeypatch.setattr(model, "tokenize", counted)
    messages = [{"role": "system", "content": "You are terse.\n\n"}]
    for turn in range(6):
        messages.append({"role": "user", "content": f"Question {turn}:  what  is {turn}²?"})
        text = template.prompt({"messages": messages}).text
        read.clear()
        tokens = tokenizer.tokenize(text)
        fresh = "".join(read)
        assert tokens == tokenize(text, False, True)
        if turn:  # the last reply and the question (and the template's marks around them)
            new = messages[-2]["content"] + messages[-1]["content"]
            assert messages[-1]["content"] in fresh and len(fresh) < len(new) + 80
            assert "terse" not in fresh and "Question 0" not in fresh
        messages.append({"role": "assistant", "content": f"It is {turn * turn}. " * 20})


def test_the_kept_pieces_stay_within_their_bound(model: Model) -> None:
    tokenizer = PromptTokenizer(model, cached_chars=100)
    for n in range(50):
        text = f"message {n} " * 3 + "<|im_end|>"
        assert tokenizer.tokenize(text * 2) == whole(model, text * 2)
        assert tokenizer._chars <= 100


def test_an_end_token_another_special_token_overlaps_is_no_cut() -> None:
    assert _overlap("<|im_end|>x", "<|im_end|>")  # contains it
    assert _overlap("x<|im", "<|im_end|>")  # ends where it starts
    assert _overlap("end|>\n<|", "<|im_end|>")  # starts where it ends
    assert not _overlap("<|im_start|>", "<|im_end|>")

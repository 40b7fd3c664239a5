"""Prefix-aware routing: a conversation's next turn goes back to the worker that holds its
earlier turns in cache, unless that worker is much busier; the index keeps only salted
hashes, bounded in number."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from nexus_app.gateway.workers.coordinator import Coordinator, WorkerLink
from nexus_app.gateway.workers.health import WorkerHealth
from nexus_app.gateway.workers.prefix_routing import PrefixIndex, prefix_hashes
from nexus_app.protocol import Hardware, ModelCard
from tests.support.gateways import auth, make_settings, running_gateway
from tests.support.scripted_worker import ScriptedWorker

MODEL = "scripted-model"
SYSTEM = {"role": "system", "content": "You answer briefly."}


def turns(*questions: str) -> list[dict[str, str]]:
    messages = [SYSTEM]
    for question in questions:
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": "ok"}]
    return messages[:-1]


def coordinator(index: PrefixIndex | None) -> Coordinator:
    health = WorkerHealth(failures_before_cooldown=3, cooldown_s=1, cooldowns_before_pause=3,
                          pause_s=1)
    return Coordinator(queue_max=8, queue_timeout_s=1, attempts=2, first_token_timeout_s=1,
                       health=health, prefixes=index)


def link(name: str, slots: int, busy: int) -> WorkerLink:
    async def send(_: str) -> None:
        return None

    worker = WorkerLink(wallet=name, models={MODEL: ModelCard(id=MODEL)}, slots=slots,
                        hardware=Hardware(), version="test", send=send, id=name)
    worker.jobs.update({f"{name}-{i}": None for i in range(busy)})  # only their number counts
    return worker


def test_the_worker_holding_the_deepest_prefix_wins_within_the_load_slack() -> None:
    index = PrefixIndex(capacity=1000)
    coord = coordinator(index)
    a, b, c = link("a", 4, 0), link("b", 4, 2), link("c", 4, 1)
    coord.workers.update({w.id: w for w in (a, b, c)})
    chat = {"messages": turns("first", "second")}
    index.given("b", index.hashes(MODEL, chat))
    index.given("c", index.hashes(MODEL, {"messages": turns("first")}))  # system + first
    cached = index.matches(index.hashes(MODEL, chat))
    assert cached == {"c": 2, "b": 4}
    assert coord._pick(MODEL, set(), cached) is b  # load 0.5 = least (0) + slack
    assert coord._pick(MODEL, {"b"}, cached) is c  # b was tried: the next deepest
    b.jobs["b-2"] = None
    assert coord._pick(MODEL, set(), cached) is c  # b is now too busy: the next deepest
    c.jobs.update({"c-1": None, "c-2": None})
    assert coord._pick(MODEL, set(), cached) is a  # both too busy: the least loaded


def test_without_a_match_the_least_loaded_worker_is_taken() -> None:
    coord = coordinator(None)
    a, b = link("a", 4, 3), link("b", 4, 1)
    coord.workers.update({w.id: w for w in (a, b)})
    assert coord._pick(MODEL, set(), {}) is b


def test_the_index_holds_salted_hashes_only_and_stays_bounded() -> None:
    index = PrefixIndex(capacity=20)
    secret = "the launch code is 7431"
    for i in range(40):
        request = {"messages": [SYSTEM, {"role": "user", "content": f"{secret} #{i}"}]}
        index.given(f"w{i % 3}", index.hashes(MODEL, request))
    assert len(index) == 20
    keys = list(index._owner)
    assert all(isinstance(key, bytes) and len(key) == 16 for key in keys)
    assert not any(secret.encode() in key for key in keys)
    request = {"messages": [SYSTEM, {"role": "user", "content": f"{secret} #39"}]}
    # another process's salt gives other hashes: nothing can be matched across processes
    assert prefix_hashes(b"x" * 16, MODEL, request) != index.hashes(MODEL, request)
    # a text prompt is cut into blocks: a shared start matches, a different one does not
    text = {"prompt": "a" * 600}
    index.given("w9", index.hashes(MODEL, text))
    assert index.matches(index.hashes(MODEL, {"prompt": "a" * 520 + "b"})) == {"w9": 2}
    assert index.matches(index.hashes("other-model", text)) == {}


async def ask(http: httpx.AsyncClient, key: str, messages: list[dict[str, str]]) -> None:
    response = await http.post("/v1/chat/completions", headers=auth(key),
                               json={"model": MODEL, "messages": messages})
    assert response.status_code == 200, response.text


def last_question(worker: ScriptedWorker) -> str:
    return worker.jobs[-1].request["messages"][-1]["content"]


async def second_turns(tmp_path: Path, **settings: int) -> tuple[str, str]:
    """Two conversations start on two workers (the first worker is busy with one when the
    other starts); then, both workers idle, each conversation sends its second turn. Returns
    the second turns the first and the second worker got, in that order."""
    async with running_gateway(make_settings(tmp_path, **settings)) as gw:
        account = await gw.account(credit=10**6)
        first = await gw.worker(slots=2, reply="one two three four", token_delay_s=0.2)
        second = await gw.worker(slots=2, reply="one two three four", token_delay_s=0.2)
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            blue = [{"role": "user", "content": "tell me about blue"}]
            started = asyncio.create_task(ask(http, account.api_key, blue))
            while not first.jobs:
                await asyncio.sleep(0.01)
            await ask(http, account.api_key, turns("hello"))
            await started
            assert [len(w.jobs) for w in (first, second)] == [1, 1]
            await ask(http, account.api_key, turns("hello", "and then?"))
            await ask(http, account.api_key,
                      [*blue, {"role": "assistant", "content": "ok"},
                       {"role": "user", "content": "and green?"}])
        return last_question(first), last_question(second)


async def test_each_conversations_next_turn_goes_back_to_its_worker(tmp_path: Path) -> None:
    assert await second_turns(tmp_path / "on") == ("and green?", "and then?")
    # with routing off, both go to the first of two idle workers
    assert await second_turns(tmp_path / "off", prefix_routing_entries=0) == (
        "and green?", "hello")

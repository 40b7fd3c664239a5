"""Conversations kept but unreadable, from clients: the README's text/generate examples (curl,
Python `requests`, Node `fetch`, the streaming reader) run as written but for the base URL,
and the official `openai` packages (Python and npm) store, continue, retrieve, list and delete
Responses. Against the scripted worker, whose received prompt shows the history; the examples
run again against the real SmolLM2 worker (slow)."""

from __future__ import annotations

import asyncio
import json
import sys

import openai
import pytest

from tests.support.gateways import ROOT, RunningGateway
from tests.support.node_packages import JS_DIR, install_pinned, require_node
from tests.support.processes import clean_environ
from tests.support.readme import code_blocks

README = (ROOT / "README.md").read_text()
TITLE = "Conversations kept but unreadable"
README_BASE = "http://127.0.0.1:8080"


def section() -> str:
    return README.split(f"\n## {TITLE}\n", 1)[1].split("\n## ", 1)[0]


async def run_example(base_url: str, key: str, command: list[str], code: str,
                      cwd: str | None = None) -> str:
    """Run one example with NEXUS_KEY set and `base_url` in place of the README's; stdout."""
    env = {**clean_environ(), "NEXUS_KEY": key}
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(
        process.communicate(code.replace(README_BASE, base_url).encode()), 300)
    assert process.returncode == 0, f"{code}\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
    return out.decode()


def test_the_section_has_the_four_examples() -> None:
    text = section()
    assert len(code_blocks(text, "bash")) == 1 and len(code_blocks(text, "python")) == 1
    assert len(code_blocks(text, "js")) == 2 and README_BASE in text


async def run_all(base_url: str, key: str) -> dict[str, str]:
    """Every example's output, by name."""
    (curl,), (python,) = code_blocks(section(), "bash"), code_blocks(section(), "python")
    fetch, stream = code_blocks(section(), "js")
    node = require_node()
    return {
        "curl": await run_example(base_url, key, ["bash"], curl),
        "requests": await run_example(base_url, key, [sys.executable, "-"], python),
        "fetch": await run_example(base_url, key, [node, "--input-type=module"], fetch),
        "stream": await run_example(base_url, key, [node, "--input-type=module"], stream),
    }


async def test_the_readme_examples_keep_a_conversation(gw: RunningGateway) -> None:
    account = await gw.account(credit=10_000_000)
    worker = await gw.worker(reply="Hello Ada")
    out = await run_all(gw.url, account.api_key)
    reply = json.loads(out["curl"])
    assert reply["success"] is True and reply["completion"] == "Hello Ada"
    assert reply["historyLength"] == 2 and reply["user"]["usageRemaining"] > 0
    assert out["requests"].splitlines() == ["2 Hello Ada", "4 Hello Ada"]
    assert out["fetch"].strip() == "2 Hello Ada"
    assert out["stream"].strip() == "[DONE] Hello Ada"
    # the requests example's second turn reached the worker after its first
    second = worker.jobs[2].request["messages"]
    assert second == [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": "My name is Ada."},
                      {"role": "assistant", "content": "Hello Ada"},
                      {"role": "user", "content": "What is my name?"}]
    # and it deleted that history: only the other examples' userids are kept
    rows = gw.store.db.execute("SELECT COUNT(*) FROM conversations").fetchone()
    assert rows == (3,)


async def test_the_openai_python_package_stores_and_continues_responses(gw) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="Hi Ada")
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=account.api_key) as client:
        first = await client.responses.create(model="scripted-model", input="I am Ada.",
                                              store=True)
        assert first.store is True and first.output_text == "Hi Ada"
        second = await client.responses.create(model="scripted-model", input="Who am I?",
                                               previous_response_id=first.id, store=True)
        assert second.previous_response_id == first.id
        assert [m["content"] for m in worker.jobs[1].request["messages"]] == [
            "I am Ada.", "Hi Ada", "Who am I?"]
        retrieved = await client.responses.retrieve(first.id)
        assert retrieved.id == first.id and retrieved.output_text == "Hi Ada"
        items = [item async for item in client.responses.input_items.list(second.id)]
        assert [item.content[0].text for item in items] == ["Who am I?"]
        await client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="scripted-model", input="again",
                                          previous_response_id=first.id)


async def test_the_openai_npm_package_stores_and_continues_responses(gw) -> None:
    node = require_node()
    install_pinned(JS_DIR)
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="Hi Ada")
    env = {**clean_environ(), "NEXUS_BASE_URL": gw.url + "/v1", "NEXUS_API_KEY": account.api_key,
           "NEXUS_MODEL": "scripted-model"}
    process = await asyncio.create_subprocess_exec(
        node, str(JS_DIR / "stored_responses.mjs"), cwd=JS_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, f"{out.decode()}\n{err.decode()}"
    assert json.loads(out.decode().splitlines()[-1])["ok"] is True
    assert [m["content"] for m in worker.jobs[1].request["messages"]] == [
        "My name is Ada.", "Hi Ada", "What is my name?"]


@pytest.mark.slow
def test_the_readme_examples_against_the_real_worker(network) -> None:
    out = asyncio.run(run_all(network.gateway.url, network.api_key))
    assert json.loads(out["curl"])["success"] is True
    # each turn prints the history's length, then the model's reply (which may span lines)
    assert out["requests"].startswith("2 ") and "\n4 " in out["requests"], out["requests"]
    assert out["fetch"].startswith("2 ")
    assert out["stream"].startswith("[DONE] ") and out["stream"].strip() != "[DONE]"

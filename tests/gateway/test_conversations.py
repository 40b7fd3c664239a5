"""Conversations the gateway keeps but cannot read, through the real gateway and the scripted
worker: `/v1/text/generate` with `userid` history and stored Responses. The prompt the worker
received is checked, not a model's answer; other accounts and keys get 404s; a revoked key's
history goes; the quota refuses before a job runs; no file under the data dir holds a word."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from nexus_app.gateway.ledger.records import ConversationKind, ConversationRecord
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from tests.support.gateways import auth, make_settings, running_gateway

MODEL = "scripted-model"


async def new_key(http: httpx.AsyncClient, session: str) -> tuple[str, str]:
    """Another API key of a signed-in account: (id, secret)."""
    made = (await http.post("/v1/keys", headers=auth(session), json={"name": "other"})).json()
    return made["id"], made["key"]


def sse_data(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.both_ledgers
async def test_a_two_turn_userid_conversation_sends_the_first_turn(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="Nice to meet you Ada")
    first = await http.post("/v1/text/generate", headers=auth(account.api_key), json={
        "prompt": "My name is Ada.", "userid": "user-1", "systemInstruction": "Be kind."})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True and body["model"] == MODEL and body["userid"] == "user-1"
    assert body["completion"] == "Nice to meet you Ada"
    assert (body["historyLength"], body["messagesUsed"]) == (2, 2)
    assert body["usage"]["prompt_tokens"] == worker.prompt_tokens
    assert body["user"]["usageRemaining"] == 1_000_000 - body["usage"]["cost"]
    second = (await http.post("/v1/text/generate", headers=auth(account.api_key), json={
        "prompt": "What is my name?", "userid": "user-1", "max_tokens": 20})).json()
    assert (second["historyLength"], second["messagesUsed"]) == (4, 3)
    # the worker got the first turn before the new one (billed as the prompt it is)
    assert worker.jobs[1].request["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you Ada"},
        {"role": "user", "content": "What is my name?"}]
    assert worker.jobs[0].request["temperature"] == 0.7
    assert (worker.jobs[0].request["max_tokens"], worker.jobs[1].request["max_tokens"]) == (
        300, 20)
    # without a userid nothing is kept or sent
    await http.post("/v1/text/generate", headers=auth(account.api_key),
                    json={"messages": [{"role": "user", "content": "alone"}]})
    assert worker.jobs[2].request["messages"] == [{"role": "user", "content": "alone"}]
    assert (await gw.store.audit()).ok


async def test_a_streamed_turn_is_chat_chunks_and_is_kept(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="streamed words here")
    async with http.stream("POST", "/v1/text/generate", headers=auth(account.api_key), json={
            "prompt": "Stream please", "userid": "s", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = sse_data((await response.aread()).decode())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "streamed words here"
    await http.post("/v1/text/generate", headers=auth(account.api_key),
                    json={"prompt": "again", "userid": "s"})
    assert worker.jobs[1].request["messages"][:2] == [
        {"role": "user", "content": "Stream please"},
        {"role": "assistant", "content": "streamed words here"}]


async def test_history_is_bound_to_its_account_and_key(gw, http) -> None:
    alice, mallory = await gw.account(credit=1_000_000), await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="ok")
    await http.post("/v1/text/generate", headers=auth(alice.api_key),
                    json={"prompt": "alice's secret", "userid": "shared-name"})
    # another account with the same userid: no history, and deleting it is a 404
    await http.post("/v1/text/generate", headers=auth(mallory.api_key),
                    json={"prompt": "hello", "userid": "shared-name"})
    assert worker.jobs[1].request["messages"] == [{"role": "user", "content": "hello"}]
    assert (await http.delete("/v1/text/history/nobody",
                              headers=auth(mallory.api_key))).status_code == 404
    # another key of alice's account cannot read it either
    key_id, other_key = await new_key(http, alice.session)
    await http.post("/v1/text/generate", headers=auth(other_key),
                    json={"prompt": "hi", "userid": "shared-name"})
    assert worker.jobs[2].request["messages"] == [{"role": "user", "content": "hi"}]
    deleted = await http.delete("/v1/text/history/shared-name", headers=auth(alice.api_key))
    assert deleted.json() == {"success": True, "userid": "shared-name", "deleted": 1}
    await http.post("/v1/text/generate", headers=auth(alice.api_key),
                    json={"prompt": "fresh", "userid": "shared-name"})
    assert worker.jobs[3].request["messages"] == [{"role": "user", "content": "fresh"}]
    # revoking a key deletes what it wrote: nobody can read it again
    assert (await http.delete(f"/v1/keys/{key_id}", headers=auth(alice.session))).is_success
    rows = gw.store.db.execute("SELECT key_id FROM conversations").fetchall()
    assert key_id not in {row[0] for row in rows} and len(rows) == 2


async def test_stored_responses_continue_retrieve_list_and_delete(gw, http) -> None:
    account, other = await gw.account(credit=1_000_000), await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="Paris is the capital")
    created = (await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": MODEL, "input": "Capital of France?", "instructions": "Be brief.",
        "store": True})).json()
    assert created["store"] is True
    response_id = created["id"]
    follow = (await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": MODEL, "input": "And its population?", "store": True,
        "previous_response_id": response_id})).json()
    assert follow["previous_response_id"] == response_id
    # the stored turn, without its instructions (OpenAI does not carry them over)
    assert worker.jobs[1].request["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris is the capital"},
        {"role": "user", "content": "And its population?"}]
    got = await http.get(f"/v1/responses/{response_id}", headers=auth(account.api_key))
    assert got.json() == created
    items = (await http.get(f"/v1/responses/{response_id}/input_items",
                            headers=auth(account.api_key))).json()
    assert items["object"] == "list" and not items["has_more"]
    [item] = items["data"]
    assert item["content"] == [{"type": "input_text", "text": "Capital of France?"}]
    # another account, or a response never stored, is a 404; continuing one is a 400
    for path in (f"/v1/responses/{response_id}", f"/v1/responses/{response_id}/input_items"):
        assert (await http.get(path, headers=auth(other.api_key))).status_code == 404
    assert (await http.delete(f"/v1/responses/{response_id}",
                              headers=auth(other.api_key))).status_code == 404
    stolen = await http.post("/v1/responses", headers=auth(other.api_key), json={
        "model": MODEL, "input": "go on", "previous_response_id": response_id})
    assert stolen.status_code == 400
    assert stolen.json()["error"]["code"] == "previous_response_not_found"
    assert len(worker.jobs) == 2  # nothing ran for it
    assert (await http.delete(f"/v1/responses/{response_id}",
                              headers=auth(account.api_key))).json()["deleted"] is True
    assert (await http.get(f"/v1/responses/{response_id}",
                           headers=auth(account.api_key))).status_code == 404


async def test_a_streamed_stored_response_can_be_continued_at_once(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="first answer")
    async with http.stream("POST", "/v1/responses", headers=auth(account.api_key), json={
            "model": MODEL, "input": "one", "store": True, "stream": True}) as response:
        text = (await response.aread()).decode()
    completed = [json.loads(line[6:]) for line in text.splitlines()
                 if line.startswith("data: ") and '"response.completed"' in line]
    response_id = completed[0]["response"]["id"]
    follow = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": MODEL, "input": "two", "previous_response_id": response_id})
    assert follow.status_code == 200, follow.text
    assert worker.jobs[1].request["messages"][0] == {"role": "user", "content": "one"}
    assert len(worker.jobs[1].request["messages"]) == 3


async def test_a_full_quota_refuses_before_the_job_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, conversation_quota_bytes=400)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        account = await gw.account(credit=1_000_000)
        worker = await gw.worker(reply="short")
        ok = await http.post("/v1/text/generate", headers=auth(account.api_key),
                             json={"prompt": "hi", "userid": "u"})
        assert ok.status_code == 200
        full = await http.post("/v1/text/generate", headers=auth(account.api_key),
                               json={"prompt": "x" * 300, "userid": "u"})
        assert full.status_code == 403
        assert full.json()["error"]["code"] == "conversation_quota_exceeded"
        assert len(worker.jobs) == 1
        # without storing, the account is served as before
        plain = await http.post("/v1/text/generate", headers=auth(account.api_key),
                                json={"prompt": "x" * 300})
        assert plain.status_code == 200


async def test_no_file_under_the_data_dir_holds_a_stored_word(tmp_path: Path) -> None:
    marker = "marker-" + uuid.uuid4().hex
    async with running_gateway(make_settings(tmp_path)) as gw, httpx.AsyncClient(
            base_url=gw.url) as http:
        account = await gw.account(credit=1_000_000)
        await gw.worker(reply=f"echo {marker}")
        for userid in ("a", f"user-{marker}"):
            response = await http.post("/v1/text/generate", headers=auth(account.api_key), json={
                "prompt": f"remember {marker}", "userid": userid})
            assert response.status_code == 200
        stored = await http.post("/v1/responses", headers=auth(account.api_key), json={
            "model": MODEL, "input": f"keep {marker}", "store": True})
        assert stored.status_code == 200
        records = gw.store.db.execute("SELECT kind FROM conversations").fetchall()
        assert sorted(kind for (kind,) in records) == [ConversationKind.RESPONSE] + [
            ConversationKind.TURN] * 2
        await gw.store.maintain()  # the WAL checkpointed into the database file as well
        assert _files_holding(tmp_path, marker.encode()) == []
    assert _files_holding(tmp_path, marker.encode()) == []


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


async def test_the_gateway_deletes_expired_conversations(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ledger = SQLiteStore(settings.db_path)
    await ledger.open()
    now = time.time()
    for record_id, expires_at in (("gone", now - 1), ("kept", now + 3600)):
        assert await ledger.add_conversation(ConversationRecord(
            record_id, "acct", "key1", ConversationKind.RESPONSE, None, b"s", b"n", b"c",
            now - 10, expires_at), 10_000)
    await ledger.close()
    async with running_gateway(settings) as gw:  # the leader prunes at once, then each minute
        for _ in range(100):
            ids = [row[0] for row in gw.store.db.execute("SELECT id FROM conversations")]
            if ids == ["kept"]:
                break
            await asyncio.sleep(0.05)
        assert ids == ["kept"]

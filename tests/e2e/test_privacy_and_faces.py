"""Privacy (no prompt or completion text at rest, stored conversations only sealed) and the
headless faces' imports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from nexus_app.gateway.conversations.crypto import ConversationKey, Sealed, Unreadable
from tests.support.gateways import ROOT, auth
from tests.support.scripted_worker import ScriptedWorker


@pytest.mark.slow
async def test_a_chat_leaves_no_trace_of_its_text_under_the_data_dir(gateway_process) -> None:
    gateway = gateway_process()
    marker = f"MARKER-{uuid.uuid4().hex}"
    _, key = await gateway.funded_key(100_000)
    worker = await ScriptedWorker(gateway.url, reply=f"echo {marker}-reply").start()
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        for stream in (False, True):
            response = await http.post("/v1/chat/completions", headers=auth(key), json={
                "model": "scripted-model", "stream": stream,
                "messages": [{"role": "user", "content": f"remember {marker}"}]})
            assert marker in response.text  # the reply really carried it
        await http.post("/v1/chat/completions", headers=auth(key), json={
            "model": "scripted-model", "messages": [{"role": "user", "content": marker}],
            "temperature": "invalid"})  # an error path too
    await worker.stop()
    gateway.process.terminate()
    gateway.process.wait(10)
    files = [p for p in gateway.settings.data_dir.rglob("*") if p.is_file()]
    files.append(gateway.log_path)
    assert any(p.suffix == ".sqlite3" for p in files)
    for path in files:
        assert marker.encode() not in path.read_bytes(), path


@pytest.mark.slow
async def test_stored_conversations_leave_no_readable_trace(gateway_process) -> None:
    """userid history and stored responses are kept, sealed: the marker is in no file under
    the data dir (database, WAL, logs), and each stored row opens under the key that wrote
    it and under no other."""
    gateway = gateway_process()
    marker = f"MARKER-{uuid.uuid4().hex}"
    _, key = await gateway.funded_key(1_000_000)
    worker = await ScriptedWorker(gateway.url, reply=f"echo {marker}-reply").start()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for stream in (False, True):
            response = await http.post("/v1/text/generate", headers=auth(key), json={
                "prompt": f"remember {marker}", "userid": f"user-{marker}", "stream": stream})
            assert marker in response.text
        first = (await http.post("/v1/responses", headers=auth(key), json={
            "model": "scripted-model", "input": f"keep {marker}", "store": True})).json()
        again = await http.get(f"/v1/responses/{first['id']}", headers=auth(key))
        assert marker in again.text  # kept, and readable with the key
    assert marker in worker.jobs[1].request["messages"][0]["content"]  # history was sent
    await worker.stop()
    gateway.process.terminate()
    gateway.process.wait(10)
    files = [p for p in gateway.settings.data_dir.rglob("*") if p.is_file()]
    files.append(gateway.log_path)
    for path in files:
        assert marker.encode() not in path.read_bytes(), path
    rows = _sealed_rows(next(p for p in files if p.name == "ledger.sqlite3"))
    assert len(rows) == 3
    right, wrong = ConversationKey.of_api_key(key), ConversationKey.of_api_key(key + "x")
    for kind, account, record_id, sealed in rows:
        associated = f"{kind}\x00{account}\x00{record_id}".encode()
        assert marker.encode() in right.open(sealed, associated)
        with pytest.raises(Unreadable):
            wrong.open(sealed, associated)


def _sealed_rows(ledger: Path) -> list[tuple[str, str, str, Sealed]]:
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT kind, account, id, salt, nonce, ciphertext"
                          " FROM conversations").fetchall()
    return [(kind, account, record_id, Sealed(salt, nonce, ciphertext))
            for kind, account, record_id, salt, nonce, ciphertext in rows]


@pytest.mark.parametrize("module", ["nexus_app.gateway", "nexus_app.gateway.server",
                                    "nexus_app.cli", "nexus_app.worker.run"])
def test_headless_faces_do_not_import_textual(module: str) -> None:
    code = f"import sys, {module}; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


def test_gateway_app_builds_without_textual(tmp_path: Path) -> None:
    code = (
        "import sys; from nexus_app.config import load_settings; "
        "from nexus_app.gateway.app import create_app; "
        f"create_app(load_settings({{'data_dir': {str(tmp_path)!r}}})); "
        "print('textual' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"

"""`nexus-app chain`, the local chain over Solana's JSON-RPC: the command itself (served,
stopped, restarted with its state), solana-py's `AsyncClient` reading balances, sending an SPL
transfer and confirming it, and the answers a cluster gives to what goes wrong (preflight,
expired blockhashes, old clients, bad parameters, unknown methods)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import TokenAccountOpts
from solders.keypair import Keypair
from solders.message import Message, to_bytes_versioned
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import BLOCKHASH_LIFETIME_BLOCKS, ChainUnavailable
from nexus_app.chain.node_encoding import b58encode
from nexus_app.chain.node_faults import RpcFault
from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.node_setup import airdrop, fund
from nexus_app.chain.rpc import RpcChain
from nexus_app.chain.treasury import LAMPORTS_PER_SOL, Treasury, signed
from nexus_app.chain.wallet import load_keypair
from tests.support.asgi import free_port
from tests.support.chain_node import BLOCK_S, NEXUS, node_port, provision, start_chain, stop
from tests.support.gateways import ROOT
from tests.support.processes import clean_environ


async def rpc(url: str, method: str, *params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.post(url, json={"jsonrpc": "2.0", "id": 7, "method": method,
                                            "params": list(params)})
    assert answer.status_code == 200 and answer.json()["id"] == 7
    return answer.json()  # type: ignore[no-any-return]


# --- the command --------------------------------------------------------------------------------

def call(port: int, method: str, *params: Any) -> Any:
    answer = httpx.post(f"http://127.0.0.1:{port}", json={
        "jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    return answer.get("result", answer.get("error"))


def test_nexus_app_chain_serves_the_data_dirs_chain_and_keeps_it(tmp_path: Path) -> None:
    port = node_port()
    chain = start_chain(tmp_path, port)
    try:
        owner = str(Keypair().pubkey())
        signature = call(port, "requestAirdrop", owner, 3 * LAMPORTS_PER_SOL)
        assert isinstance(signature, str)
        genesis = call(port, "getGenesisHash")
        assert call(port, "getBalance", owner, {"commitment": "processed"})["value"] == (
            3 * LAMPORTS_PER_SOL)
        assert call(port, "getHealth") == "ok"
        assert call(port, "noSuchMethod") == {"code": -32601, "message": "Method not found"}
        second = subprocess.run(
            [sys.executable, "-m", "nexus_app", "chain", "--data-dir", str(tmp_path),
             "--port", str(free_port())], cwd=ROOT, env=clean_environ(),
            capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1 and "open in another process" in second.stderr
        mint = call(port, "getAccountInfo", str(chain.mint), {"encoding": "base64"})["value"]
        assert mint["owner"] == str(token.TOKEN_PROGRAM_ID) and mint["space"] == 82
        treasury = load_keypair(chain.treasury_path)  # the mint's authority
        assert chain.treasury_path.stat().st_mode & 0o077 == 0
        [held] = call(port, "getTokenAccountsByOwner", str(treasury.pubkey()),
                      {"mint": str(chain.mint)})["value"]
        assert held["pubkey"] == str(token.associated_token_address(treasury.pubkey(),
                                                                    chain.mint))
    finally:
        stop(chain)
    assert (tmp_path / "local-chain.sqlite3").stat().st_mode & 0o077 == 0

    again = start_chain(tmp_path, port)  # restarted: same chain, same history, same mint
    try:
        assert again.mint == chain.mint
        assert call(port, "getBalance", owner)["value"] == 3 * LAMPORTS_PER_SOL
        assert call(port, "getGenesisHash") == genesis
        [entry] = call(port, "getSignaturesForAddress", owner, {"commitment": "confirmed"})
        assert (entry["signature"], entry["err"]) == (signature, None)
    finally:
        stop(again)


def test_a_chain_process_takes_faults_and_clock_jumps_only_when_asked(tmp_path: Path) -> None:
    port = node_port()
    chain = start_chain(tmp_path, port, BLOCK_S, "--fault-control")
    try:
        fault = {"code": -32005, "message": "Node is unhealthy", "calls": 1}
        switched = httpx.post(f"{chain.url}/faults", json={"errors": {"getHealth": fault}})
        assert switched.status_code == 200
        assert call(port, "getHealth") == {"code": -32005, "message": "Node is unhealthy"}
        assert call(port, "getHealth") == "ok"
        blockhash = call(port, "getLatestBlockhash")["value"]["blockhash"]
        assert httpx.post(f"{chain.url}/advance", json={"blocks": 151}).status_code == 200
        assert call(port, "isBlockhashValid", blockhash)["value"] is False
        record = httpx.get(f"{chain.url}/faults").json()
        assert record["answered_errors"] == ["getHealth"] and "getHealth" in record["calls"]
        assert httpx.post(f"{chain.url}/faults", json={"latency_s": "x"}).status_code == 400
    finally:
        stop(chain)
    plain = start_chain(tmp_path, port)  # without --fault-control: no switch to reach
    try:
        httpx.post(f"{plain.url}/faults", json={"errors": {"getHealth": fault}})
        assert call(port, "getHealth") == "ok"
    finally:
        stop(plain)


# --- solana-py's AsyncClient --------------------------------------------------------------------

async def test_solana_py_reads_balances_sends_a_transfer_and_confirms_it(
    node: ChainNode,
) -> None:
    treasury = await provision(node.url)
    sender, receiver = Keypair(), Keypair()
    await fund(node.url, treasury, sender.pubkey(), 50 * NEXUS)
    await fund(node.url, treasury, receiver.pubkey(), 0)
    source = token.associated_token_address(sender.pubkey(), treasury.mint)
    destination = token.associated_token_address(receiver.pubkey(), treasury.mint)
    async with AsyncClient(node.url, commitment=Confirmed) as client:
        assert (await client.get_balance(sender.pubkey())).value == LAMPORTS_PER_SOL
        before = (await client.get_token_account_balance(source)).value
        assert (before.amount, before.decimals, before.ui_amount_string) == ("50000000", 6, "50")
        owned = (await client.get_token_accounts_by_owner(
            sender.pubkey(), TokenAccountOpts(mint=treasury.mint))).value
        assert [entry.pubkey for entry in owned] == [source]

        blockhash = (await client.get_latest_blockhash()).value.blockhash
        tx = signed(sender, [
            token.transfer_checked(source, treasury.mint, destination, sender.pubkey(),
                                   12_500_000, 6),
            token.memo(sender.pubkey(), "from solana-py"),
        ], blockhash)
        assert (await client.simulate_transaction(tx)).value.err is None
        signature = (await client.send_transaction(tx)).value
        await client.confirm_transaction(signature, Confirmed, sleep_seconds=0.05)

        assert (await client.get_token_account_balance(destination)).value.amount == "12500000"
        found = (await client.get_transaction(signature, "json", Confirmed, 0)).value
        assert found is not None and found.transaction.meta is not None
        meta = found.transaction.meta
        assert meta.err is None and meta.fee == 5000
        pre = {b.account_index: b.ui_token_amount.amount for b in meta.pre_token_balances}
        post = {b.account_index: b.ui_token_amount.amount for b in meta.post_token_balances}
        assert sorted(pre.values()) == ["0", "50000000"]
        assert sorted(post.values()) == ["12500000", "37500000"]
        assert f"Program {token.TOKEN_PROGRAM_ID} invoke [1]" in meta.log_messages
        [entry] = (await client.get_signatures_for_address(destination, limit=1)).value
        assert (entry.signature, entry.memo) == (signature, "[14] from solana-py")
        accounts = (await client.get_multiple_accounts([source, Keypair().pubkey()])).value
        assert accounts[0] is not None and accounts[0].owner == token.TOKEN_PROGRAM_ID
        assert accounts[1] is None
        sliced = await rpc(node.url, "getAccountInfo", str(source), {
            "encoding": "base64", "dataSlice": {"offset": 64, "length": 8}})
        assert base64.b64decode(sliced["result"]["value"]["data"][0]) == (
            (37_500_000).to_bytes(8, "little"))  # the amount, and only it
        rent = (await client.get_minimum_balance_for_rent_exemption(165)).value
        assert rent == 2_039_280


# --- what a cluster answers when something is wrong ---------------------------------------------

async def transfer_tx(node: ChainNode, lamports: int) -> tuple[Keypair, VersionedTransaction]:
    payer = Keypair()
    await airdrop(node.url, payer.pubkey())
    blockhash = (await node.chain.recent_blockhash()).blockhash
    message = Message.new_with_blockhash([transfer(TransferParams(
        from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports))],
        payer.pubkey(), blockhash)
    return payer, VersionedTransaction(message, [payer])


def encoded(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


async def test_preflight_refusals_in_solanas_error_shape(node: ChainNode) -> None:
    _, too_much = await transfer_tx(node, 2 * LAMPORTS_PER_SOL)
    refused = (await rpc(node.url, "sendTransaction", encoded(too_much),
                         {"encoding": "base64"}))["error"]
    assert refused["code"] == -32002
    assert refused["message"].startswith("Transaction simulation failed: Error processing "
                                         "Instruction 0: custom program error: 0x1")
    assert refused["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
    assert any("insufficient lamports" in line for line in refused["data"]["logs"])
    assert (await rpc(node.url, "getSignatureStatuses", [str(too_much.signatures[0])])
            )["result"]["value"] == [None]

    _, fine = await transfer_tx(node, 1_000_000)  # base58, the method's default encoding
    signature = (await rpc(node.url, "sendTransaction", b58encode(bytes(fine))))["result"]
    assert signature == str(fine.signatures[0])
    legacy = (await rpc(node.url, "getTransaction", signature, {"commitment": "confirmed"}))
    assert "version" not in (legacy.get("result") or {})  # legacy: no version asked, none given
    forged = VersionedTransaction.populate(fine.message, [Keypair().sign_message(b"x")])
    bad = (await rpc(node.url, "sendTransaction", encoded(forged), {"encoding": "base64"}))
    assert bad["error"]["code"] == -32003
    junk = (await rpc(node.url, "sendTransaction", "AAAA", {"encoding": "base64"}))
    assert junk["error"]["code"] == -32602
    assert (await rpc(node.url, "getBalance", "not-a-key"))["error"]["code"] == -32602


async def test_blockhashes_expire_with_the_clock(node: ChainNode) -> None:
    _, tx = await transfer_tx(node, 1000)
    blockhash = str(tx.message.recent_blockhash)
    message = base64.b64encode(to_bytes_versioned(tx.message)).decode()
    assert (await rpc(node.url, "isBlockhashValid", blockhash))["result"]["value"] is True
    assert (await rpc(node.url, "getFeeForMessage", message))["result"]["value"] == 5000
    node.clock.advance(BLOCKHASH_LIFETIME_BLOCKS + 1)
    assert (await rpc(node.url, "isBlockhashValid", blockhash))["result"]["value"] is False
    assert (await rpc(node.url, "getFeeForMessage", message))["result"]["value"] is None

    refused = (await rpc(node.url, "sendTransaction", encoded(tx), {"encoding": "base64"}))
    assert refused["error"]["code"] == -32002
    assert refused["error"]["data"]["err"] == "BlockhashNotFound"
    skipped = await rpc(node.url, "sendTransaction", encoded(tx),
                        {"encoding": "base64", "skipPreflight": True})
    assert skipped["result"] == str(tx.signatures[0])  # accepted, and it never lands
    statuses = await rpc(node.url, "getSignatureStatuses", [skipped["result"]])
    assert statuses["result"]["value"] == [None]


async def test_v0_transactions_need_max_supported_version_and_commitment_is_honoured(
    node: ChainNode,
) -> None:
    treasury: Treasury = await provision(node.url)  # its transactions are v0
    [entry, *_] = (await rpc(node.url, "getSignaturesForAddress", str(treasury.address),
                             {"commitment": "confirmed"}))["result"]
    old = await rpc(node.url, "getTransaction", entry["signature"],
                    {"commitment": "confirmed"})
    assert old["error"]["code"] == -32015
    new = await rpc(node.url, "getTransaction", entry["signature"],
                    {"commitment": "confirmed", "encoding": "base64",
                     "maxSupportedTransactionVersion": 0})
    assert new["result"]["version"] == 0 and new["result"]["transaction"][1] == "base64"
    below = await rpc(node.url, "getTransaction", entry["signature"],
                      {"commitment": "processed"})
    assert below["error"]["code"] == -32602
    slots = {level: (await rpc(node.url, "getSlot", {"commitment": level}))["result"]
             for level in ("finalized", "confirmed", "processed")}  # asked in this order
    assert slots["confirmed"] - slots["finalized"] >= 31
    assert slots["processed"] - slots["finalized"] >= 32


async def test_batches_and_malformed_requests(node: ChainNode) -> None:
    async with httpx.AsyncClient() as http:
        batch = (await http.post(node.url, json=[
            {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
            {"jsonrpc": "2.0", "id": 2, "method": "getVersion"},
        ])).json()
        assert [a["id"] for a in batch] == [1, 2] and batch[0]["result"] == "ok"
        assert "solana-core" in batch[1]["result"]
        parse = (await http.post(node.url, content=b"{not json")).json()
        assert parse["error"]["code"] == -32700
        invalid = (await http.post(node.url, json={"id": 3, "method": "getHealth"})).json()
        assert invalid["error"]["code"] == -32600
    info = (await rpc(node.url, "getEpochInfo"))["result"]
    assert info["slotIndex"] == info["absoluteSlot"] % info["slotsInEpoch"]



async def test_signature_pages_and_the_fault_switch(node: ChainNode) -> None:
    payer = Keypair()
    await airdrop(node.url, payer.pubkey(), 5 * LAMPORTS_PER_SOL)
    sent = []
    for _ in range(4):
        blockhash = (await node.chain.recent_blockhash()).blockhash
        tx = VersionedTransaction(Message.new_with_blockhash([transfer(TransferParams(
            from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=LAMPORTS_PER_SOL
        ))], payer.pubkey(), blockhash), [payer])
        sent.append((await rpc(node.url, "sendTransaction", encoded(tx),
                               {"encoding": "base64"}))["result"])
    await asyncio.sleep(2 * BLOCK_S)  # confirmed

    async def page(**config: Any) -> list[str]:
        entries = (await rpc(node.url, "getSignaturesForAddress", str(payer.pubkey()),
                             {"commitment": "confirmed", **config}))["result"]
        return [entry["signature"] for entry in entries]

    newest_first = sent[::-1]
    assert (await page())[:4] == newest_first and len(await page()) == 5  # and the airdrop
    assert await page(limit=2, before=sent[3]) == [sent[2], sent[1]]
    assert await page(until=sent[1]) == [sent[3], sent[2]]
    assert await page(before=sent[2], until=sent[0]) == [sent[1]]

    unhealthy = RpcFault(-32005, "Node is unhealthy", {"numSlotsBehind": 42}, calls=1)
    node.faults.errors["getHealth"] = unhealthy
    assert (await rpc(node.url, "getHealth"))["error"] == {
        "code": -32005, "message": "Node is unhealthy", "data": {"numSlotsBehind": 42}}
    assert (await rpc(node.url, "getHealth"))["result"] == "ok"  # one call only
    node.faults.latency_s = 0.5
    slow = RpcChain(node.url, timeout_s=0.2)
    with pytest.raises(ChainUnavailable, match="did not answer getBlockHeight"):
        await slow.block_height()
    await slow.close()

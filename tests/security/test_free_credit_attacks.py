"""Free credit and solvency, attacked for real against a gateway on loopback with its local
chain; each attack must fail:

- laundering: with `free_credit_weekly` set, fresh wallets spend free credit on a private
  model served by the attacker's own worker, which claims the earnings in real $NEXUS. With
  an unfunded pool no wallet gets free credit; with a pool of X, the free credit issued across
  any number of fresh wallets never exceeds X, the attacker claims at most what came out of
  the pool, and every other user's deposit stays backed (the solvency audit passes, on chain);
- the operator's pool funding is credited once per signature, and neither a user's deposit
  nor a payout out of the treasury can be passed off as one;
- funding the local chain while a gateway holds it is refused (it would fork its state);
- the treasury drained on chain behind the ledger's back: `nexus-app admin audit` reports
  insolvent and exits 1 (on the local chain, and on the rpc chain against the RPC test double,
  where the pool is funded from the operator's keypair file).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.chain.connect import connect_chain
from nexus_app.chain.treasury import signed
from nexus_app.chain.wallet import load_keypair
from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.config import Settings
from nexus_app.contracts import PayoutView
from tests.support.chain_node import MINT, rpc_settings
from tests.support.gateways import (
    ROOT,
    RunningGateway,
    auth,
    make_settings,
    running_gateway,
    signed_in_account,
)
from tests.support.processes import env_for
from tests.support.scripted_worker import ScriptedWorker
from tests.support.solana_rpc_double import (
    TOKEN_ACCOUNT_RENT,
    RpcDouble,
    rpc_double,
    token_account_data,
)

NEXUS = 1_000_000  # base units (6 decimals)
MODEL = "attacker-private"  # the attacker's own model, served only by the attacker's worker
JOB = NEXUS  # what one request to it costs: the whole of a week's free credit
DEPOSIT = 20 * NEXUS  # an honest user's deposit


def attack_settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, free_credit_weekly="1",
                         prices={MODEL: {"per_request": JOB}})


def admin(settings: Settings, *args: str) -> tuple[int, dict[str, Any], str]:
    """`nexus-app admin …` as the operator runs it, in its own process on the data dir:
    (exit status, its --json output, stderr)."""
    done = subprocess.run([sys.executable, "-m", "nexus_app", "admin", *args, "--json"],
                          env=env_for(settings), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


async def spend_free_credit(gw: RunningGateway, wallets: int) -> list[tuple[int, int]]:
    """Fresh wallets each sign in, read their free credit and send one request to the
    attacker's model: (free credit, status) per wallet."""
    results = []
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        for _ in range(wallets):
            account = await signed_in_account(gw.url)
            headers = auth(account.api_key)
            free = (await http.get("/v1/balance", headers=headers)).json()["free_credit"]
            response = await http.post("/v1/chat/completions", headers=headers, json={
                "model": MODEL, "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}]})
            results.append((free, response.status_code))
    return results


async def claim(gw: RunningGateway, worker: ScriptedWorker) -> PayoutView:
    """The attacker's worker claims its earnings to its wallet (SOL for its own token account
    from the faucet first)."""
    async with GatewayClient(gw.url) as client:
        await client.sign_in(worker.keypair)
        await client.faucet("1")
        return await client.claim(worker.keypair)


async def deposit(gw: RunningGateway) -> str:
    """An honest user deposits `DEPOSIT` for real (faucet, then a signed transfer); returns
    the deposit's signature."""
    user = Keypair()
    async with GatewayClient(gw.url) as client:
        await client.sign_in(user)
        await client.faucet(str(DEPOSIT // NEXUS))
        result = await client.deposit(user, str(DEPOSIT // NEXUS))
    assert result.status == "credited", result
    return str(result.signature)


async def test_an_unfunded_pool_issues_no_free_credit_to_launder(tmp_path: Path) -> None:
    async with running_gateway(attack_settings(tmp_path)) as gw:
        worker = await gw.worker(models=[MODEL])
        results = await spend_free_credit(gw, wallets=6)
        assert results == [(0, 402)] * 6  # no free credit, so no job for the attacker
        assert worker.jobs == [] and (await gw.store.worker_earnings(worker.wallet)).earned == 0
        with pytest.raises(ClientError):
            await claim(gw, worker)  # nothing to claim
        assert await gw.store.promo_pool() == 0
        await gw.assert_solvent()


@dataclass
class Laundering:
    funding: str  # signatures: the pool's funding, the honest deposit, the attacker's payout
    deposit: str
    payout: str
    claimed: int
    issued: list[int]


async def launder_from_a_funded_pool(settings: Settings, pool: int, wallets: int) -> Laundering:
    """The operator funds the pool with `pool` (the CLI, gateway stopped), an honest user
    deposits, fresh wallets spend their free credit on the attacker's worker and it claims."""
    status, funded, stderr = admin(settings, "fund-promo", str(pool / NEXUS))
    assert status == 0, stderr
    assert (funded["credited"], funded["amount"], funded["pool"]) == (True, pool, pool)
    async with running_gateway(settings) as gw:
        deposit_signature = await deposit(gw)
        worker = await gw.worker(models=[MODEL])
        results = await spend_free_credit(gw, wallets)
        payout = await claim(gw, worker)
        assert payout.status == "paid", payout
        await gw.assert_solvent()
        # the honest user's deposit is intact and backed
        audit = await gw.store.audit()
        assert audit.deposits == DEPOSIT and audit.pool == 0
    return Laundering(funded["signature"], deposit_signature, payout.signature,
                      payout.amount, [free for free, _ in results])


async def test_free_credit_from_a_funded_pool_never_exceeds_it(tmp_path: Path) -> None:
    settings = attack_settings(tmp_path / "data")
    pool = 3 * JOB + JOB // 2
    done = await launder_from_a_funded_pool(settings, pool, wallets=8)
    # three wallets get a week's credit, the fourth what was left, the rest nothing
    assert done.issued == [JOB, JOB, JOB, JOB // 2, 0, 0, 0, 0]
    assert sum(done.issued) == pool
    # the attacker's worker earned (and was paid) its share of three jobs: out of the pool
    assert done.claimed == 3 * JOB * 80 // 100 <= pool
    # after the gateway stops, the operator's audit checks the ledger against the chain
    status, audit, stderr = admin(settings, "audit")
    assert status == 0, stderr
    assert audit["ok"] and audit["ledger_ok"] and audit["solvent"], audit
    # on chain: the deposit and the pool came in, the attacker's payout went out
    assert audit["treasury_balance"] == DEPOSIT + pool - done.claimed
    assert audit["owed"] == DEPOSIT + JOB // 2  # the deposit, and the fourth wallet's credit
    assert audit["surplus"] == 3 * JOB - done.claimed  # the treasury's fees


async def test_only_real_pool_fundings_are_credited_and_only_once(tmp_path: Path) -> None:
    settings = attack_settings(tmp_path / "data")
    done = await launder_from_a_funded_pool(settings, 2 * JOB, wallets=2)
    status, again, stderr = admin(settings, "promo-credit", done.funding)
    assert status == 0, stderr
    assert (again["credited"], again["pool"]) == (False, 0)  # no second credit
    status, _, stderr = admin(settings, "promo-credit", done.deposit)
    assert status == 1 and "reference key" in stderr  # a deposit stays a deposit
    status, _, stderr = admin(settings, "promo-credit", done.payout)
    assert status == 1 and "out of the treasury" in stderr  # tokens leaving are no funding
    status, audit, stderr = admin(settings, "audit")
    assert status == 0 and audit["promo_funding"] == 2 * JOB, stderr


async def test_funding_the_local_chain_under_a_running_gateway_is_refused(
        tmp_path: Path) -> None:
    settings = attack_settings(tmp_path)
    async with running_gateway(settings) as gw:
        status, _, stderr = admin(settings, "fund-promo", "5")
        assert status == 1 and "stop it first" in stderr
        assert await gw.store.promo_pool() == 0
        await gw.assert_solvent()


async def test_a_treasury_drained_behind_the_ledger_is_reported_insolvent(
        tmp_path: Path) -> None:
    settings = attack_settings(tmp_path / "data")
    status, _, stderr = admin(settings, "fund-promo", "2")
    assert status == 0, stderr
    async with running_gateway(settings) as gw:
        await deposit(gw)
        await gw.assert_solvent()
    # with the treasury's keypair, the tokens leave on chain; the ledger knows nothing of it
    chain, treasury = await connect_chain(settings)
    thief = Keypair().pubkey()
    held = await chain.token_balance(treasury.token_account)
    assert held == DEPOSIT + 2 * NEXUS
    await chain.send(signed(treasury.keypair, [
        token.create_token_account(treasury.address, thief, treasury.mint),
        token.transfer_checked(treasury.token_account, treasury.mint,
                               token.associated_token_address(thief, treasury.mint),
                               treasury.address, held // 2, treasury.decimals),
    ], await chain.latest_blockhash()))
    await chain.close()
    status, audit, stderr = admin(settings, "audit")
    assert status == 1 and "insolvent" in stderr
    assert audit["ledger_ok"] and not audit["solvent"] and not audit["ok"], audit
    assert (audit["treasury_balance"], audit["owed"]) == (held - held // 2, held)


def add_token_account(double: RpcDouble, owner: Pubkey, amount: int) -> Pubkey:
    """An existing $NEXUS token account of `owner` on the RPC test double."""
    address = token.associated_token_address(owner, MINT)
    double.accounts[str(address)] = (TOKEN_ACCOUNT_RENT, token_account_data(MINT, owner, amount),
                                     str(token.TOKEN_PROGRAM_ID))
    return address


async def test_on_the_rpc_chain_the_audit_reads_the_treasury_from_the_node(
        tmp_path: Path) -> None:
    async with rpc_double() as double:
        settings = rpc_settings(tmp_path, double)
        operator = Keypair()
        operator_file = tmp_path / "operator.json"
        operator_file.write_text(json.dumps(list(bytes(operator))))
        treasury = add_token_account(double, load_keypair(settings.treasury_path).pubkey(), 0)
        add_token_account(double, operator.pubkey(), 9 * NEXUS)  # the operator's $NEXUS
        # subprocesses in threads: the double answers on this event loop
        status, _, stderr = await asyncio.to_thread(admin, settings, "fund-promo", "4")
        assert status == 1 and "--from" in stderr  # nothing to mint from on a real cluster
        status, funded, stderr = await asyncio.to_thread(
            admin, settings, "fund-promo", "4", "--from", str(operator_file))
        assert status == 0 and (funded["credited"], funded["pool"]) == (True, 4 * NEXUS), stderr
        status, audit, stderr = await asyncio.to_thread(admin, settings, "audit")
        assert status == 0 and audit["solvent"], stderr
        assert audit["treasury_balance"] == audit["owed"] == 4 * NEXUS
        double.set_token_amount(treasury, -NEXUS)  # tokens gone behind the ledger's back
        status, audit, stderr = await asyncio.to_thread(admin, settings, "audit")
        assert status == 1 and "insolvent" in stderr
        assert (audit["treasury_balance"], audit["surplus"]) == (3 * NEXUS, -NEXUS)

"""How fast money moves through the gateway: faucet, deposits and claims, on the in-process
local chain and over Solana's JSON-RPC on `nexus-app chain`.

Starts a real gateway (`nexus-app --gateway`) as a subprocess, first on the local LiteSVM chain
in its own process (`--chain local`), then on `--chain rpc` against `nexus-app chain` (the same
LiteSVM chain served over JSON-RPC, blocks every 0.4 s as on a cluster; the gateway waits for
`--commitment`, default confirmed). Each depositor is a fresh wallet: sign-in and faucet (over
RPC: an airdrop and a mint by the treasury), then deposits, each one `GET
/v1/deposits/intent` + signing + `POST /v1/deposits` (the gateway checks, sends, confirms,
reads back and credits), one at a time and then from many wallets at once. A claim is a
scripted worker's earnings of one chat paid out on chain (`POST /v1/workers/claim`: the
treasury's transfer sent and confirmed).
Run: `python bench/chain_money.py [--deposits 50] [--wallets 10] [--claims 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from solders.keypair import Keypair  # noqa: E402

from nexus_app.chain.node_setup import airdrop, fund  # noqa: E402
from nexus_app.chain.treasury import Treasury  # noqa: E402
from nexus_app.chain.wallet import load_keypair  # noqa: E402
from nexus_app.client.gateway import GatewayClient  # noqa: E402
from tests.support.chain_node import node_port, rpc_settings, start_chain, stop  # noqa: E402
from tests.support.gateways import auth, make_settings, signed_in_account  # noqa: E402
from tests.support.processes import GatewayProcess, start_gateway_process  # noqa: E402
from tests.support.scripted_worker import ScriptedWorker  # noqa: E402

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
Faucet = Callable[[GatewayClient, Keypair], Awaitable[None]]


def row(backend: str, name: str, latencies: list[float], wall: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p50, p95 = statistics.median(ms), ms[math.ceil(len(ms) * 0.95) - 1]
    return f"| {backend} | {name} | {len(ms)} | {p50:.1f} | {p95:.1f} | {len(ms) / wall:.1f} |"


async def depositor(url: str, faucet: Faucet) -> tuple[GatewayClient, Keypair, str]:
    account = await signed_in_account(url)
    client = GatewayClient(url, token=account.session)
    await faucet(client, account.keypair)
    return client, account.keypair, account.api_key


async def timed_deposits(client: GatewayClient, keypair: Keypair, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        result = await client.deposit(keypair, "0.5")
        latencies.append(time.perf_counter() - start)
        assert result.status == "credited", result
    return latencies


async def timed_claims(gateway: GatewayProcess, api_key: str, worker: ScriptedWorker,
                       count: int) -> list[float]:
    """`count` rounds of one chat served by `worker`, then its claim (timed)."""
    client = GatewayClient(gateway.url)
    await client.sign_in(worker.keypair)
    await client.create_token_account(worker.keypair)
    latencies = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        for _ in range(count):
            chat = await http.post("/v1/chat/completions", json=CHAT, headers=auth(api_key))
            assert chat.status_code == 200, chat.text
            start = time.perf_counter()
            paid = await client.claim()
            latencies.append(time.perf_counter() - start)
            assert paid.status == "paid", paid
    return latencies


async def run(backend: str, gateway: GatewayProcess, faucet: Faucet, worker_sol: Faucet,
              args: argparse.Namespace) -> None:
    start, wallets, took = time.perf_counter(), [], []
    for _ in range(args.wallets):
        t = time.perf_counter()
        wallets.append(await depositor(gateway.url, faucet))
        took.append(time.perf_counter() - t)
    print(row(backend, "new wallet: sign-in + faucet", took, time.perf_counter() - start))

    client, keypair, api_key = wallets[0]
    start = time.perf_counter()
    one = await timed_deposits(client, keypair, args.deposits)
    print(row(backend, "deposit, one at a time", one, time.perf_counter() - start))
    start = time.perf_counter()
    each = await asyncio.gather(*(timed_deposits(c, k, max(1, args.deposits // len(wallets)))
                                  for c, k, _ in wallets))
    print(row(backend, f"deposit, {len(wallets)} wallets at once",
              [x for xs in each for x in xs], time.perf_counter() - start))

    worker = await ScriptedWorker(gateway.url).start()
    try:
        worker_client = GatewayClient(gateway.url)
        await worker_client.sign_in(worker.keypair)
        await worker_sol(worker_client, worker.keypair)
        start = time.perf_counter()
        claims = await timed_claims(gateway, api_key, worker, args.claims)
        print(row(backend, "claim (chat earnings paid out)", claims, time.perf_counter() - start))
    finally:
        await worker.stop()
    assert await gateway.audit_ok(), f"{backend}: the ledger invariant does not hold"


async def on_local(tmp: Path, args: argparse.Namespace) -> None:
    gateway = start_gateway_process(make_settings(tmp / "local"))

    async def faucet(client: GatewayClient, _: Keypair) -> None:
        await client.faucet("1000")

    try:
        await run("local (in-process)", gateway, faucet, faucet, args)
    finally:
        gateway.process.terminate()
        gateway.process.wait(10)


async def on_rpc(tmp: Path, args: argparse.Namespace) -> None:
    chain = start_chain(tmp / "chain", node_port(), args.block_time)
    url = chain.url
    gateway: GatewayProcess | None = None
    try:  # the gateway takes the chain's own mint and treasury, as an operator would
        treasury = Treasury(load_keypair(chain.treasury_path), chain.mint, 6)
        (tmp / "rpc").mkdir()
        gateway = start_gateway_process(rpc_settings(tmp / "rpc", chain, treasury,
                                                     rpc_commitment=args.commitment))

        async def faucet(_: GatewayClient, keypair: Keypair) -> None:
            await fund(url, treasury, keypair.pubkey(), 1000 * 10**6)

        async def sol(_: GatewayClient, keypair: Keypair) -> None:
            await airdrop(url, keypair.pubkey())

        await run(f"rpc ({args.commitment})", gateway, faucet, sol, args)
    finally:
        if gateway is not None:
            gateway.process.terminate()
            gateway.process.wait(10)
        stop(chain)


async def bench(args: argparse.Namespace) -> None:
    print("| backend | operation | count | p50 ms | p95 ms | per second |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        await on_local(Path(tmp), args)
        await on_rpc(Path(tmp), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deposits", type=int, default=50)
    parser.add_argument("--wallets", type=int, default=10)
    parser.add_argument("--claims", type=int, default=10)
    parser.add_argument("--block-time", type=float, default=0.4,
                        help="seconds per slot of nexus-app chain (default 0.4, a cluster's)")
    parser.add_argument("--commitment", choices=["processed", "confirmed", "finalized"],
                        default="confirmed", help="what the gateway waits for on rpc")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()

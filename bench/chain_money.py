"""How fast money moves on the local chain: faucet and deposits through the gateway.

Starts a real gateway (`nexus-app --gateway`, local LiteSVM chain) as a subprocess. Each
depositor is a fresh wallet: sign-in, faucet, then deposits, each one `GET
/v1/deposits/intent` + signing + `POST /v1/deposits` (the gateway checks, sends, reads back
and credits). Deposits run one at a time and then from many wallets at once.
Run: `python bench/chain_money.py [--deposits 200] [--wallets 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from solders.keypair import Keypair  # noqa: E402

from nexus_app.client.gateway import GatewayClient  # noqa: E402
from tests.conftest import make_settings, signed_in_account, start_gateway_process  # noqa: E402


def row(name: str, latencies: list[float], wall: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p50, p95 = statistics.median(ms), ms[int(len(ms) * 0.95) - 1]
    return f"| {name} | {len(ms)} | {p50:.1f} | {p95:.1f} | {len(ms) / wall:.0f} |"


async def depositor(url: str) -> tuple[GatewayClient, Keypair]:
    account = await signed_in_account(url)
    client = GatewayClient(url, token=account.session)
    await client.faucet("1000")
    return client, account.keypair


async def timed_deposits(client: GatewayClient, keypair: Keypair, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        result = await client.deposit(keypair, "0.5")
        latencies.append(time.perf_counter() - start)
        assert result.status == "credited"
    return latencies


async def bench(deposits: int, wallets: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp) / "data", prices={})
        gateway = start_gateway_process(settings)
        try:
            print("| operation | count | p50 ms | p95 ms | per second |")
            print("|---|---|---|---|---|")
            start = time.perf_counter()
            faucet_lat = []
            for _ in range(20):
                t = time.perf_counter()
                await depositor(gateway.url)
                faucet_lat.append(time.perf_counter() - t)
            print(row("new wallet: sign-in + faucet", faucet_lat, time.perf_counter() - start))

            client, keypair = await depositor(gateway.url)
            start = time.perf_counter()
            one = await timed_deposits(client, keypair, deposits)
            print(row("deposit, one at a time", one, time.perf_counter() - start))

            users = [await depositor(gateway.url) for _ in range(wallets)]
            start = time.perf_counter()
            each = await asyncio.gather(*(
                timed_deposits(c, k, max(1, deposits // wallets)) for c, k in users
            ))
            print(row(f"deposit, {wallets} wallets at once", [x for xs in each for x in xs],
                      time.perf_counter() - start))

            ledger = await gateway.open_ledger()
            audit = await ledger.audit()
            print(f"\nledger: deposits {audit.deposits} base units, invariant ok: {audit.ok}")
        finally:
            gateway.process.terminate()
            gateway.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deposits", type=int, default=200)
    parser.add_argument("--wallets", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(bench(args.deposits, args.wallets))


if __name__ == "__main__":
    main()

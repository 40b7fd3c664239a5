"""`nexus-app chain` for tests: a free port pair for it (its WebSocket is on the next port), the
command as a process, a treasury and wallets funded over its JSON-RPC, and the settings of a
gateway on `--chain rpc` against it (or against `solana_rpc_double.py`)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain.node_setup import make_treasury
from nexus_app.chain.treasury import Treasury
from nexus_app.config import Settings
from tests.support.asgi import free_port
from tests.support.gateways import ROOT, make_settings
from tests.support.processes import clean_environ

MINT = Keypair().pubkey()  # the mint a gateway on the double names (the double checks none)
BLOCK_S = 0.05  # a block every 50 ms: finalized 1.6 s after landing, blockhashes live 7.5 s
NEXUS = 1_000_000  # base units of 1 $NEXUS (6 decimals)


def node_port() -> int:
    """A free port whose next one is free too: the node serves its WebSocket there."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


async def provision(url: str) -> Treasury:
    """A new treasury with SOL, a new $NEXUS mint it is the authority of, and its token
    account (`node_setup.fund` is then the faucet: SOL by airdrop, $NEXUS it mints)."""
    return await make_treasury(url, Keypair(), 6)


def rpc_settings(tmp_path: Path, node: Any, treasury: Treasury | None = None,
                 **overrides: Any) -> Settings:
    """A gateway on `--chain rpc` at `node.url` (a node, in-process or a process, or the
    double) with `treasury`'s keypair and mint (default: a new keypair, and MINT)."""
    keypair = treasury.keypair if treasury else Keypair()
    treasury_file = tmp_path / "treasury.json"
    treasury_file.write_text(json.dumps(list(bytes(keypair))))
    treasury_file.chmod(0o600)  # a gateway refuses a treasury key others can read
    mint = treasury.mint if treasury else MINT
    return make_settings(tmp_path, chain="rpc", rpc_url=node.url, mint=str(mint),
                         treasury_keypair=treasury_file, **overrides)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@dataclass
class ChainProcess:
    process: subprocess.Popen[bytes]
    url: str
    mint: Pubkey  # the $NEXUS mint it announced, the data dir's treasury its authority
    treasury_path: Path


def start_chain(data_dir: Path, port: int, block_s: float = BLOCK_S,
                *options: str) -> ChainProcess:
    """`nexus-app chain` as a process, once it has announced the chain's mint."""
    log_path = data_dir.parent / f"chain-{port}.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nexus_app", "chain", "--data-dir", str(data_dir), "--port",
             str(port), "--block-time", str(block_s), *options],
            cwd=ROOT, env=clean_environ(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        announced = re.findall(r"\$NEXUS mint (\w+)", log_path.read_text()[start:])
        if announced:
            return ChainProcess(process, f"http://127.0.0.1:{port}",
                                Pubkey.from_string(announced[-1]), data_dir / "treasury.json")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"nexus-app chain did not start: {log_path.read_text()}")


def stop(chain: ChainProcess) -> None:
    chain.process.send_signal(signal.SIGINT)
    chain.process.wait(timeout=15)

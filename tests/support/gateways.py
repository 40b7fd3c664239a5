"""A real gateway on loopback in this process (uvicorn in the test's event loop), its
settings for tests, and signed-in accounts with API keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from solders.keypair import Keypair

from nexus_app.client.gateway import GatewayClient
from nexus_app.config import Settings, load_settings
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.money.solvency import check_solvency
from nexus_app.gateway.server import uvicorn_config
from nexus_app.gateway.service import Gateway
from tests.support.asgi import free_port, served
from tests.support.scripted_worker import ScriptedWorker

ROOT = Path(__file__).resolve().parents[2]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "config": data_dir / "absent.toml",
        "port": free_port(),
        "log_level": "warning",
        "prices": {"scripted-model": {"per_request": 1000}},
        # a scripted chat earns a worker 800 base units: claimable (the default is 1 NEXUS;
        # tests/security/test_payout_attacks.py checks it)
        "min_payout": "0.000001",
    }
    values.update(overrides)
    return load_settings(values, environ={})


@dataclass
class Account:
    keypair: Keypair
    api_key: str
    session: str

    @property
    def wallet(self) -> str:
        return str(self.keypair.pubkey())


async def signed_in_account(url: str) -> Account:
    """A new wallet, signed in to the gateway at `url`, with one API key."""
    keypair = Keypair()
    async with GatewayClient(url) as client:
        session = await client.sign_in(keypair)
        key = await client.create_key("test")
    return Account(keypair, key.key, session)


@dataclass
class RunningGateway:
    settings: Settings
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def gateway(self) -> Gateway:
        return self.server.config.app.state.gateway  # type: ignore[no-any-return]

    @property
    def store(self) -> SQLiteStore:
        return self.gateway.store  # type: ignore[return-value]

    async def account(self, credit: int = 0) -> Account:
        """A new wallet with `credit` granted, signed in, with one API key."""
        account = await signed_in_account(self.url)
        if credit:
            await self.store.grant(account.wallet, credit, "test credit")
        return account

    async def worker(self, **kwargs: Any) -> ScriptedWorker:
        return await ScriptedWorker(self.url, **kwargs).start()

    async def assert_solvent(self) -> int:
        """The ledger invariant holds and the treasury's balance on chain covers all that is
        owed (only where credit came from deposits: a grant is backed by nothing); returns
        the surplus."""
        audit, solvency = await check_solvency(self.store, self.gateway.chain,
                                               self.gateway.treasury.token_account)
        assert audit.ok, audit
        assert solvency.ok and solvency.treasury_balance >= solvency.owed, solvency
        return solvency.surplus


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    config = uvicorn_config(settings)
    config.lifespan = "on"
    server = uvicorn.Server(config)
    async with served(server, stop_timeout=15):
        yield RunningGateway(settings, server)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}

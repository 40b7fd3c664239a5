"""A test double of the terminal app's link to a network, for snapshots of its online screens:
`FixedLink` is online at once and answers every call of the screens with the same fixed
data (a wallet with deposits, keys, the network's models, a worker's earnings by hour, a
streamed reply), so the screens run their own code on answers that never change. The real
link against real gateways is what tests/tui/test_local.py and test_chat.py drive."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from solders.keypair import Keypair

from nexus_app.client.chat_types import ListedPrice, ModelInfo, Reply
from nexus_app.config import Settings
from nexus_app.contracts import (
    ApiKeyView,
    BalanceView,
    DepositEntryView,
    EarningsHistory,
    EarningsHour,
    EarningsView,
    ModelPricing,
    ModelView,
    ModelWorkers,
    NetworkStats,
    WalletView,
)
from nexus_app.tui.link import Connection, Link
from nexus_app.tui.telemetry import Sample
from nexus_app.units import format_units

T = TypeVar("T")
URL = "https://gateway.example"
NOW = 1_800_003_000  # 2027-01-15 08:50 UTC: the fixed "now" of the snapshots
HOUR = 3600
DECIMALS = 6
MODEL = "smollm2-135m-instruct-q4_1"
WALLET = Keypair.from_seed(bytes(range(32)))


def _nexus(units: int) -> str:
    return format_units(units, DECIMALS)


def _earnings_hours() -> list[EarningsHour]:
    """A day of a worker's earnings: busier in the evening, and this hour so far."""
    this_hour = NOW // HOUR * HOUR
    hours = []
    for ago in range(23, -1, -1):
        jobs = (ago * 7 + 3) % 11
        if jobs:
            earned = jobs * 1_600
            hours.append(EarningsHour(hour=this_hour - ago * HOUR, earned=earned,
                                      earned_display=_nexus(earned), jobs=jobs))
    return hours


class FixedGateway:
    """The account endpoints' answers, always the same."""

    async def balance(self) -> BalanceView:
        return BalanceView(account=str(WALLET.pubkey()), balance=24_912_000, free_credit=0,
                           reserved=0, total_spent=88_000, decimals=DECIMALS,
                           balance_display=_nexus(24_912_000), last_updated=NOW)

    async def deposits(self) -> list[DepositEntryView]:
        return [DepositEntryView(id=f"dep_{n}", reference=f"Ref{n}", amount=amount,
                                 amount_display=_nexus(amount), memo=f"nexus:dep_{n}",
                                 status=status, signature=signature, created_at=at,
                                 credited_at=at + 2 if status == "credited" else None)
                for n, (amount, status, signature, at) in enumerate([
                    (25_000_000, "credited", "5VfYmGBaKq8cXW2pD7nTz" * 4, NOW - 7_200),
                    (10_000_000, "pending", None, NOW - 60)])]

    async def wallet(self) -> WalletView:
        return WalletView(address=str(WALLET.pubkey()), chain="local", mint="Mint1111",
                          decimals=DECIMALS, token_account="Ata1111",
                          sol_lamports=2_000_000_000, nexus=75_000_000,
                          nexus_display=_nexus(75_000_000))

    async def list_keys(self) -> list[ApiKeyView]:
        return [ApiKeyView(id=f"key_{n}", name=name, prefix=prefix, created_at=NOW - age,
                           last_used_at=used, revoked=revoked,
                           revoked_at=NOW - 100 if revoked else None, rpm=None, tpm=None)
                for n, (name, prefix, age, used, revoked) in enumerate([
                    ("nexus-app terminal", "nex_live_a1b2", 86_400, NOW - 30, False),
                    ("laptop", "nex_live_c3d4", 3_600, None, True)])]

    async def network_stats(self) -> NetworkStats:
        return NetworkStats(workers_online=3, accelerators={"cuda": 2, "cpu": 1}, gpus=2,
                            slots_total=12, slots_busy=5, workers_benched=0, queue_depth=1,
                            jobs_per_min=42, tokens_per_s=317.5,
                            models=[ModelWorkers(id=MODEL, workers=3)])

    async def models(self) -> list[ModelView]:
        return [ModelView(id=MODEL, created=NOW - 86_400, owned_by="nexus", context_length=8192,
                          workers=3, quantization="Q4_1", parameters=135_000_000,
                          pricing=ModelPricing(decimals=DECIMALS, per_request=0,
                                               input_per_million=100_000,
                                               output_per_million=400_000))]

    async def worker_earnings(self) -> EarningsView:
        earned = sum(h.earned for h in _earnings_hours())
        paid = 40_000
        return EarningsView(wallet=str(WALLET.pubkey()), earned=earned, paid=paid, paying=0,
                            pending=earned - paid, earned_display=_nexus(earned),
                            paid_display=_nexus(paid), paying_display=_nexus(0),
                            pending_display=_nexus(earned - paid), claimable_from=None,
                            min_payout=1, min_payout_display=_nexus(1), state="ok",
                            decimals=DECIMALS, payouts=[])

    async def earnings_history(self, hours: int = 24) -> EarningsHistory:
        return EarningsHistory(wallet=str(WALLET.pubkey()),
                               since=(NOW // HOUR - hours + 1) * HOUR, decimals=DECIMALS,
                               data=_earnings_hours())


class FixedChat:
    """The chat answers: one model, a balance, and the same reply to every prompt."""

    reply = "**Red**, green and blue."

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo(MODEL, 8192, 3, ListedPrice(0, 100_000, 400_000, DECIMALS))]

    async def balance(self) -> BalanceView:
        return await FixedGateway().balance()

    async def stream(self, model: str, messages: list[dict[str, str]],
                     max_tokens: int | None = None, **options: Any
                     ) -> AsyncIterator[str | Reply]:
        for word in self.reply.split(" "):
            yield word + " "
        yield Reply("stop", 12, 7, 2_800)

    async def aclose(self) -> None:
        pass


class FixedLink(Link):
    """The app's link, online at `URL` with the fixed answers above."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gateway = FixedGateway()

    async def connect(self) -> Connection:
        self.chat = FixedChat()  # type: ignore[assignment]
        self.connection = Connection("online", "remote", URL, True)
        return self.connection

    def keypair(self) -> Keypair:
        return WALLET

    async def account_call(self, call: Callable[[Any], Awaitable[T]]) -> T:
        return await call(self.gateway)

    async def close(self) -> None:
        pass


def dashboard_samples() -> list[Sample]:
    """An hour of a busy worker's readings, every 30 s up to `NOW`."""
    samples = []
    for step in range(121):
        wave = math.sin(step / 9)
        samples.append(Sample(NOW - 3600 + step * 30, tokens_per_s=round(180 + 60 * wave, 1),
                              gpu_util=round(70 + 25 * wave), vram_used_mb=6144 + step * 8,
                              temperature_c=round(62 + 8 * wave), power_w=round(210 + 90 * wave)))
    return samples

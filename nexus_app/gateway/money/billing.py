"""Billing a request: reserve the most it can cost before dispatch, then settle or refund.

Token counts a worker reports are capped by what the gateway can verify: the prompt by an
upper bound computed from the request, the completion by `max_tokens` and by the bytes the
gateway really relayed (every token a tokenizer emits is at least one byte of text).
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_app.gateway.errors import InsufficientCredit
from nexus_app.gateway.ledger.records import Settlement
from nexus_app.gateway.ledger.store import LedgerStore
from nexus_app.gateway.money.free_credit import FreeCredit
from nexus_app.gateway.money.pricing import Price, PriceBook, split_fee
from nexus_app.ids import new_id


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    account: str
    amount: int
    price: Price
    prompt_bound: int
    max_tokens: int


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """Token counts as billed (after capping) and the resulting cost."""

    prompt_tokens: int
    completion_tokens: int
    cost: int


class Billing:
    def __init__(self, store: LedgerStore, prices: PriceBook, worker_share_percent: int,
                 free_credit: FreeCredit) -> None:
        self.store = store
        self.prices = prices
        self.worker_share_percent = worker_share_percent
        self.free_credit = free_credit

    async def reserve(
        self, account: str, model: str, prompt_bound: int, max_tokens: int
    ) -> Reservation:
        """Hold the maximum cost of a request; 402 when the balance does not cover it."""
        await self.free_credit.top_up(account)
        price = self.prices.for_model(model)
        amount = price.cost(prompt_bound, max_tokens)
        reservation = Reservation(
            new_id("res"), account, amount, price, prompt_bound, max_tokens
        )
        if not await self.store.reserve(reservation.id, account, amount):
            balance = await self.store.balance(account)
            raise InsufficientCredit(
                f"Insufficient credit: this request may cost up to {amount} base units and the "
                f"balance is {balance.available}. Deposit $NEXUS or lower max_tokens."
            )
        return reservation

    def bill(
        self, reservation: Reservation, prompt_tokens: int, completion_tokens: int,
        delivered_bytes: int,
    ) -> BilledUsage:
        """Cap reported token counts by what can be verified, and price them."""
        prompt = min(prompt_tokens, reservation.prompt_bound)
        completion = min(completion_tokens, reservation.max_tokens, delivered_bytes)
        return BilledUsage(prompt, completion, reservation.price.cost(prompt, completion))

    async def settle(
        self, reservation: Reservation, billed: BilledUsage, worker_wallet: str
    ) -> None:
        worker, treasury = split_fee(billed.cost, self.worker_share_percent)
        await self.store.settle(
            reservation.id, Settlement(billed.cost, worker_wallet, worker, treasury)
        )

    async def refund(self, reservation: Reservation) -> None:
        await self.store.release(reservation.id)

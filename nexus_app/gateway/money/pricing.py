"""Pure money math: prices in integer base units, request costs, and the worker/treasury split.

Every amount is an `int` of token base units (10**decimals per NEXUS). USD-pinned prices are
converted once, exactly, with `Decimal`, rounding up to the next base unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from nexus_app.config import Settings
from nexus_app.config_gateway import ModelPrice

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price in base units."""

    per_request: int
    input_per_million: int
    output_per_million: int

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost of a request with these token counts (per-token parts rounded up)."""
        return (
            self.per_request
            + _ceil_div(prompt_tokens * self.input_per_million, MILLION)
            + _ceil_div(completion_tokens * self.output_per_million, MILLION)
        )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def usd_to_base_units(usd: Decimal, nexus_usd_rate: Decimal, decimals: int) -> int:
    """USD amount -> base units at `nexus_usd_rate` USD per NEXUS, rounded up."""
    units = usd / nexus_usd_rate * (Decimal(10) ** decimals)
    return int(units.to_integral_value(rounding=ROUND_CEILING))


def resolve_price(price: ModelPrice, settings: Settings) -> Price:
    """Turn a configured price (base units or USD-pinned) into base units."""

    def pick(base: int, usd: Decimal | None) -> int:
        if usd is None:
            return base
        if settings.nexus_usd_rate is None:
            raise ValueError("a USD-pinned price needs nexus_usd_rate")
        return usd_to_base_units(usd, settings.nexus_usd_rate, settings.token_decimals)

    return Price(
        per_request=pick(price.per_request, price.usd_per_request),
        input_per_million=pick(price.input_per_million, price.usd_input_per_million),
        output_per_million=pick(price.output_per_million, price.usd_output_per_million),
    )


class PriceBook:
    """Prices of every model, resolved from settings once."""

    def __init__(self, settings: Settings) -> None:
        self._default = resolve_price(settings.default_price, settings)
        self._prices = {m: resolve_price(p, settings) for m, p in settings.prices.items()}

    def for_model(self, model: str) -> Price:
        return self._prices.get(model, self._default)

    def configured(self, model: str) -> bool:
        return model in self._prices


def split_fee(cost: int, worker_share_percent: int) -> tuple[int, int]:
    """(worker earning, treasury fee) of a settled cost; the remainder of the division
    goes to the treasury so the two always add up to `cost`."""
    worker = cost * worker_share_percent // 100
    return worker, cost - worker


"""Pure money math: integer prices, rounding up, exact USD conversion, the fee split."""

from decimal import Decimal

import pytest

from nexus_app.config import load_settings
from nexus_app.config_gateway import ModelPrice
from nexus_app.gateway.money.pricing import (
    Price,
    PriceBook,
    resolve_price,
    split_fee,
    usd_to_base_units,
)


def test_cost_adds_flat_fee_and_rounds_token_parts_up() -> None:
    price = Price(per_request=100, input_per_million=3, output_per_million=1_000_000)
    assert price.cost(0, 0) == 100
    assert price.cost(1, 0) == 101  # 3/1M of a unit rounds up to 1
    assert price.cost(333_334, 0) == 100 + 2  # 1.000002 -> 2
    assert price.cost(0, 7) == 107


def test_cost_is_monotonic_so_a_reservation_covers_the_real_cost() -> None:
    price = Price(per_request=5, input_per_million=777, output_per_million=1_234)
    reserved = price.cost(1000, 500)
    for prompt in range(0, 1001, 37):
        for completion in range(0, 501, 29):
            assert price.cost(prompt, completion) <= reserved


@pytest.mark.parametrize("cost", [0, 1, 7, 99, 100, 101, 123_456_789])
@pytest.mark.parametrize("share", [0, 33, 80, 100])
def test_fee_split_always_adds_up(cost: int, share: int) -> None:
    worker, treasury = split_fee(cost, share)
    assert worker + treasury == cost
    assert worker == cost * share // 100
    assert min(worker, treasury) >= 0


def test_usd_conversion_is_exact_and_rounds_up() -> None:
    # 0.002 USD at 0.5 USD per NEXUS = 0.004 NEXUS = 4000 base units (6 decimals)
    assert usd_to_base_units(Decimal("0.002"), Decimal("0.5"), 6) == 4000
    # 1 USD at 3 USD/NEXUS = 0.333333.. NEXUS -> rounds up
    assert usd_to_base_units(Decimal("1"), Decimal("3"), 6) == 333_334


def test_usd_pinned_price_needs_a_rate() -> None:
    settings = load_settings({"nexus_usd_rate": None}, environ={})
    with pytest.raises(ValueError, match="nexus_usd_rate"):
        resolve_price(ModelPrice(usd_per_request=Decimal("0.01")), settings)


def test_price_book_uses_config_then_default() -> None:
    settings = load_settings(
        {
            "nexus_usd_rate": "0.25",
            "prices": {"a": {"per_request": 7}, "b": {"usd_output_per_million": "2"}},
            "default_price": {"per_request": 1},
        },
        environ={},
    )
    book = PriceBook(settings)
    assert book.for_model("a") == Price(7, 0, 0)
    assert book.for_model("b") == Price(0, 0, 8_000_000)  # 2 USD / 0.25 = 8 NEXUS
    assert book.for_model("other") == Price(1, 0, 0)
    assert book.configured("a") and not book.configured("other")

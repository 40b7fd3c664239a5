"""$NEXUS amounts: exact conversion between display units ("12.5") and integer base units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

MAX_BASE_UNITS = 2**63 - 1  # the most a ledger integer (and an SPL token amount) holds


class AmountError(ValueError):
    """An amount that is not a positive number with at most the mint's decimals."""


def to_base_units(amount: str | int | Decimal, decimals: int) -> int:
    """'12.5' NEXUS -> base units, exactly; refuses more decimals than the mint has."""
    if isinstance(amount, float | bool):
        raise AmountError("give the amount as a string or an integer, not a float")
    text = str(amount).strip()
    if len(text) > 64:
        raise AmountError("the amount is too long")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise AmountError(f"'{amount}' is not a number") from None
    if not value.is_finite():
        raise AmountError(f"'{amount}' is not a number")
    if value.adjusted() + decimals > len(str(MAX_BASE_UNITS)):
        raise AmountError(f"'{amount}' is more than can ever exist")
    with localcontext() as exact:  # enough digits that scaling never rounds
        exact.prec = len(value.as_tuple().digits) + decimals + 1
        units = value.scaleb(decimals)
    if units != units.to_integral_value() or units <= 0:
        raise AmountError(f"'{amount}' must be positive with at most {decimals} decimals")
    if units > MAX_BASE_UNITS:
        raise AmountError(f"'{amount}' is more than can ever exist")
    return int(units)


def format_units(amount: int, decimals: int) -> str:
    """Base units as an exact decimal string (no float rounding)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"

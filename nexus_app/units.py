"""$NEXUS amounts: exact conversion between display units ("12.5") and integer base units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


class AmountError(ValueError):
    """An amount that is not a positive number with at most the mint's decimals."""


def to_base_units(amount: str | int | Decimal, decimals: int) -> int:
    """'12.5' NEXUS -> base units, exactly; refuses more decimals than the mint has."""
    if isinstance(amount, float | bool):
        raise AmountError("give the amount as a string or an integer, not a float")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise AmountError(f"'{amount}' is not a number") from None
    if not value.is_finite():
        raise AmountError(f"'{amount}' is not a number")
    units = value * (Decimal(10) ** decimals)
    if units != units.to_integral_value() or units <= 0:
        raise AmountError(f"'{amount}' must be positive with at most {decimals} decimals")
    return int(units)


def format_units(amount: int, decimals: int) -> str:
    """Base units as an exact decimal string (no float rounding)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"

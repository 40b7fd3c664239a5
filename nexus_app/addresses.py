"""Solana addresses as text: base58 of 32 bytes. A leaf module in plain Python, so that the
settings can check an address without importing the chain (which reads the settings) or
loading solders, which costs the terminal app's start-up some 30 ms."""

from __future__ import annotations

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_DIGIT = {char: value for value, char in enumerate(BASE58)}
MAX_CHARS = 44  # base58 of 32 bytes is at most 44 characters


def _decode(text: str) -> bytes | None:
    """The bytes `text` encodes in base58, or None if it is not base58."""
    number = 0
    for char in text:
        digit = _DIGIT.get(char)
        if digit is None:
            return None
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))  # each leading "1" is a zero byte
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def is_valid_address(wallet: str) -> bool:
    """Whether `wallet` is a Solana address (an ed25519 public key or a program-derived
    address: 32 bytes, in base58)."""
    if not isinstance(wallet, str) or not 0 < len(wallet) <= MAX_CHARS:
        return False
    decoded = _decode(wallet)
    return decoded is not None and len(decoded) == 32

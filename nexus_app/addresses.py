"""Solana addresses as text. A leaf module (it imports only solders), so that the settings
can check an address without importing the chain, which itself reads the settings."""

from __future__ import annotations

from solders.pubkey import Pubkey


def is_valid_address(wallet: str) -> bool:
    try:
        Pubkey.from_string(wallet)
    except (ValueError, TypeError):
        return False
    return True

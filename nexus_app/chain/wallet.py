"""Solana keypairs in the `solana-keygen` JSON format, and ed25519 message signatures."""

from __future__ import annotations

import json
import os
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature


class WalletError(Exception):
    """A keypair file that cannot be read or written."""


def load_keypair(path: Path) -> Keypair:
    """Read a keypair file: a JSON array of 64 byte values (Solana `id.json`)."""
    try:
        raw = json.loads(path.read_text())
        return Keypair.from_bytes(bytes(raw))
    except FileNotFoundError:
        raise WalletError(f"no wallet at {path}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise WalletError(f"{path} is not a Solana keypair file ({type(exc).__name__})") from None


def create_keypair(path: Path) -> Keypair:
    """Generate a keypair and write it with mode 0600; never overwrites a file."""
    keypair = Keypair()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_keypair(path)
    with os.fdopen(fd, "w") as fh:
        json.dump(list(bytes(keypair)), fh)
    return keypair


def load_or_create_keypair(path: Path) -> Keypair:
    return load_keypair(path) if path.exists() else create_keypair(path)


def sign(keypair: Keypair, message: bytes) -> str:
    """Base58 ed25519 signature of `message`."""
    return str(keypair.sign_message(message))


def verify(wallet: str, message: bytes, signature: str) -> bool:
    """True when `signature` (base58) is `wallet`'s signature of `message`."""
    try:
        return Signature.from_string(signature).verify(Pubkey.from_string(wallet), message)
    except (ValueError, TypeError):
        return False


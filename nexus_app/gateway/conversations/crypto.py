"""Sealing stored conversation turns under the caller's API key, which the gateway never
stores (only its SHA-256).

Once per request the raw key becomes `ConversationKey` material (HKDF-SHA256, a context of
its own, so it is not the stored hash and cannot be computed from it); the raw key itself is
dropped with the request. Each record gets a fresh 16-byte salt: its AES-256-GCM key is
HKDF-SHA256 of the material with that salt, and its additional data names the record and its
account, so a sealed turn neither opens under another key nor moved to another record.
A `userid` is kept only as an HMAC-SHA256 under the material: an opaque label that another
key, even of the same account, cannot reproduce.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT_BYTES = 16
NONCE_BYTES = 12  # AES-GCM's standard nonce
_MATERIAL_INFO = b"nexus-app conversations v1"
_TURN_INFO = b"nexus-app conversation turn v1"
_LABEL_INFO = b"nexus-app conversation label v1"


class Unreadable(Exception):
    """A sealed record does not open under this key (another key wrote it, or it was
    altered)."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """One encrypted record as stored: its salt, nonce and ciphertext (with the GCM tag)."""

    salt: bytes
    nonce: bytes
    ciphertext: bytes


def _hkdf(material: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(material)


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """What a request may seal and open conversation records with: derived from its raw API
    key once, never the key itself, and never shown in a repr or log."""

    material: bytes = field(repr=False)

    @classmethod
    def of_api_key(cls, raw_key: str) -> ConversationKey:
        return cls(_hkdf(raw_key.encode(), None, _MATERIAL_INFO))

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
        aead = AESGCM(_hkdf(self.material, salt, _TURN_INFO))
        return Sealed(salt, nonce, aead.encrypt(nonce, plaintext, associated))

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        aead = AESGCM(_hkdf(self.material, sealed.salt, _TURN_INFO))
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, associated)
        except InvalidTag:
            raise Unreadable("this record was sealed under another key") from None

    def label(self, account: str, userid: str) -> str:
        """The opaque label that stands for `userid` of `account` (hex HMAC-SHA256)."""
        label_key = _hkdf(self.material, None, _LABEL_INFO)
        message = account.encode() + b"\x00" + userid.encode()
        return hmac.new(label_key, message, hashlib.sha256).hexdigest()

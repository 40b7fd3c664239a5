"""Request bodies of the NEXUS routes (keys, sign-in, deposits, faucet, webhooks, token
accounts), validated with pydantic; unknown fields are ignored, known fields of the wrong type
or out of range are a 400 naming the field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

LEDGER_INT_MAX = 2**63 - 1  # the ledger stores integers as SQLite INTEGER (signed 64-bit)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyCreateRequest(_Body):
    name: str = Field("default", min_length=1, max_length=64)
    rpm: int | None = Field(None, ge=1, le=LEDGER_INT_MAX,
                            description="requests per minute, at most the gateway's "
                            "(default: gateway's)")
    tpm: int | None = Field(None, ge=1, le=LEDGER_INT_MAX,
                            description="tokens per minute, at most the gateway's "
                            "(default: gateway's)")


class ChallengeRequest(_Body):
    wallet: str = Field(min_length=32, max_length=44)


class LoginRequest(_Body):
    wallet: str = Field(min_length=32, max_length=44)
    nonce: str = Field(min_length=1, max_length=128)
    signature: str = Field(min_length=64, max_length=90)
    message: str | None = Field(None, max_length=2048, description="the signed Sign-In-With-"
                                "Solana message; when given it must be the one issued")


Amount = StrictStr | StrictInt  # NEXUS, e.g. "12.5" or 25; floats are refused (not exact)


class DepositSubmit(_Body):
    """A deposit: the signed transaction for the gateway to send, or the signature of one
    the client sent itself."""

    transaction: str | None = Field(None, max_length=4096, description="base64 transaction")
    signature: str | None = Field(None, max_length=128, description="base58 signature")

    @model_validator(mode="after")
    def _one_of(self) -> DepositSubmit:
        if (self.transaction is None) == (self.signature is None):
            raise ValueError("give either 'transaction' or 'signature'")
        return self


WebhookEvent = Literal[
    "deposit.credited", "balance.low", "key.created", "key.revoked", "model.unavailable"
]


class WebhookCreate(_Body):
    url: str = Field(min_length=8, max_length=2048,
                     description="https:// to a public address (http:// to loopback only "
                     "where the operator allows loopback webhooks)")
    events: list[WebhookEvent] | None = Field(
        None, min_length=1,
        description="the events to send (default: all; balance.low when a threshold is set)")
    balance_low_threshold: Amount | None = Field(
        None, description="NEXUS; balance.low is sent when the credit falls under it")


class FaucetRequest(_Body):
    amount: Amount
    wallet: str | None = Field(None, max_length=64, description="default: the caller's wallet")


class TokenAccountCreate(_Body):
    """The caller's own signed, idempotent creation of its associated token account."""

    transaction: str = Field(max_length=4096, description="base64 transaction")

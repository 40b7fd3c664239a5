"""The JSON-RPC node's read methods: accounts, balances, token accounts, rent, and what the
cluster says about itself (health, version, genesis hash, epoch, slot, block height).

Account state is the chain's latest at every commitment (the local chain keeps no older
state); the `context.slot` of an answer is the slot at the commitment asked for.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Awaitable, Callable
from typing import Any

from solders.account import Account
from solders.hash import Hash
from solders.message import from_bytes_versioned
from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.chain.local import LocalChain
from nexus_app.chain.node_clock import LAG, SLOTS_PER_EPOCH, SlotClock
from nexus_app.chain.node_encoding import (
    InvalidParams,
    account_json,
    is_token_account,
    mint_decimals,
    pubkey,
    ui_amount,
)

API_VERSION = "2.1.21"  # the Agave release whose RPC answers these shapes follow
FEATURE_SET = 1_725_507_508
MAX_MULTIPLE_ACCOUNTS = 100
LAMPORTS_PER_SIGNATURE = 5000
Handler = Callable[..., Awaitable[Any]]


def config_of(params: tuple[Any, ...], index: int) -> dict[str, Any]:
    """The configuration object at `params[index]` ({} when absent)."""
    config = params[index] if len(params) > index else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidParams("Invalid params: the configuration must be an object")
    return config


def commitment_of(config: dict[str, Any]) -> str:
    commitment = config.get("commitment") or "finalized"
    if commitment not in LAG:
        raise InvalidParams(f"Invalid params: unknown commitment {str(commitment)[:32]!r}")
    return str(commitment)


class NodeReads:
    """Read methods on the local chain, each `(*params) -> result`."""

    def __init__(self, chain: LocalChain, clock: SlotClock, transaction_count: Callable[[], int],
                 ) -> None:
        self.chain = chain
        self.clock = clock
        self._transaction_count = transaction_count

    def table(self) -> dict[str, Handler]:
        names = ("getAccountInfo", "getMultipleAccounts", "getBalance", "getTokenAccountBalance",
                 "getTokenAccountsByOwner", "getMinimumBalanceForRentExemption", "getHealth",
                 "getVersion", "getGenesisHash", "getEpochInfo", "getSlot", "getBlockHeight",
                 "getFeeForMessage", "getRecentPrioritizationFees", "getTransactionCount")
        return {name: getattr(self, name) for name in names}

    def context(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"slot": self.clock.at(commitment_of(config)), "apiVersion": API_VERSION}

    def account(self, address: Pubkey) -> Account | None:
        """The account at `address`, None when it holds no lamports (a cluster has none)."""
        account = self.chain.account(address)
        return account if account is not None and account.lamports > 0 else None

    def decimals_of(self, accounts: list[Account | None]) -> dict[Pubkey, int]:
        """The decimals of the mints of the token accounts among `accounts`."""
        mints = {Pubkey.from_bytes(bytes(a.data)[:32])
                 for a in accounts if a is not None and is_token_account(a)}
        return {mint: mint_decimals(self.chain.account(mint)) for mint in mints}

    def encoded(self, account: Account | None, config: dict[str, Any]) -> dict[str, Any] | None:
        if account is None:
            return None
        return account_json(account, config.get("encoding"), self.decimals_of([account]),
                            config.get("dataSlice"))

    async def getAccountInfo(self, address: str, *rest: Any) -> dict[str, Any]:
        config = config_of(rest, 0)
        return {"context": self.context(config),
                "value": self.encoded(self.account(pubkey(address)), config)}

    async def getMultipleAccounts(self, addresses: list[str], *rest: Any) -> dict[str, Any]:
        config = config_of(rest, 0)
        if not isinstance(addresses, list) or len(addresses) > MAX_MULTIPLE_ACCOUNTS:
            raise InvalidParams(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        return {"context": self.context(config), "value": [
            self.encoded(self.account(pubkey(address)), config) for address in addresses]}

    async def getBalance(self, address: str, *rest: Any) -> dict[str, Any]:
        account = self.account(pubkey(address))
        return {"context": self.context(config_of(rest, 0)),
                "value": account.lamports if account else 0}

    async def getTokenAccountBalance(self, address: str, *rest: Any) -> dict[str, Any]:
        account = self.account(pubkey(address))
        if account is None:
            raise InvalidParams("Invalid param: could not find account")
        if not is_token_account(account):
            raise InvalidParams("Invalid param: not a Token account")
        decimals = self.decimals_of([account])
        mint = Pubkey.from_bytes(bytes(account.data)[:32])
        return {"context": self.context(config_of(rest, 0)), "value": ui_amount(
            token.token_account_amount(bytes(account.data)), decimals[mint])}

    async def getTokenAccountsByOwner(self, owner: str, selector: dict[str, Any],
                                      *rest: Any) -> dict[str, Any]:
        config = config_of(rest, 0)
        wanted = pubkey(owner)
        if not isinstance(selector, dict) or not ({"mint", "programId"} & selector.keys()):
            raise InvalidParams("Invalid params: give a mint or a programId")
        mint = pubkey(selector["mint"]) if "mint" in selector else None
        if "programId" in selector and pubkey(selector["programId"]) != token.TOKEN_PROGRAM_ID:
            raise InvalidParams("Invalid param: unrecognized Token program id")
        found = [
            {"pubkey": str(address), "account": self.encoded(account, config)}
            for address, account in self.chain.program_accounts(token.TOKEN_PROGRAM_ID)
            if is_token_account(account) and account.lamports > 0
            and bytes(account.data)[32:64] == bytes(wanted)
            and (mint is None or bytes(account.data)[:32] == bytes(mint))
        ]
        return {"context": self.context(config), "value": found}

    async def getMinimumBalanceForRentExemption(self, size: int, *_: Any) -> int:
        if not isinstance(size, int) or size < 0:
            raise InvalidParams("Invalid params: the data length must be a whole number")
        return self.chain.rent_exempt_minimum(size)

    async def getHealth(self, *_: Any) -> str:
        return "ok"

    async def getVersion(self, *_: Any) -> dict[str, Any]:
        return {"solana-core": API_VERSION, "feature-set": FEATURE_SET}

    async def getGenesisHash(self, *_: Any) -> str:
        genesis = self.chain.meta("genesis_hash")
        if genesis is None:  # made on the first start of this chain, kept with it
            genesis = str(Hash(os.urandom(32)))
            self.chain.set_meta("genesis_hash", genesis)
        return genesis

    async def getEpochInfo(self, *rest: Any) -> dict[str, Any]:
        slot = self.clock.at(commitment_of(config_of(rest, 0)))
        return {"absoluteSlot": slot, "blockHeight": slot, "epoch": slot // SLOTS_PER_EPOCH,
                "slotIndex": slot % SLOTS_PER_EPOCH, "slotsInEpoch": SLOTS_PER_EPOCH,
                "transactionCount": self._transaction_count()}

    async def getFeeForMessage(self, encoded: str, *rest: Any) -> dict[str, Any]:
        """The fee of a base64 message: 5000 lamports a signature (no priority fee); null
        when its blockhash is not valid any more, as on a cluster."""
        try:
            message = from_bytes_versioned(base64.b64decode(encoded, validate=True))
        except (ValueError, TypeError, binascii.Error):
            raise InvalidParams("Invalid params: not a base64 message") from None
        last_valid = self.chain.blockhash_last_valid(message.recent_blockhash)
        valid = last_valid is not None and self.clock.height() <= last_valid
        return {"context": self.context(config_of(rest, 0)),
                "value": LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures
                if valid else None}

    async def getRecentPrioritizationFees(self, *_: Any) -> list[dict[str, Any]]:
        return []  # no slot of this chain ever had a priority fee

    async def getTransactionCount(self, *_: Any) -> int:
        return self._transaction_count()

    async def getSlot(self, *rest: Any) -> int:
        return self.clock.at(commitment_of(config_of(rest, 0)))

    async def getBlockHeight(self, *rest: Any) -> int:
        return self.clock.at(commitment_of(config_of(rest, 0)))

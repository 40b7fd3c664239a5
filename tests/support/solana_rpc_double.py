"""TEST DOUBLE of a Solana cluster's JSON-RPC endpoint, on loopback.

The RPC backend's own tests and the trust model's failure paths run against `nexus-app chain`
(tests/chain/test_rpc_chain.py, tests/chain/test_node_faults.py), which executes for real and whose
fault switch answers with errors, drops answers, loses accepted transactions, withholds
statuses until expiry and jumps its clock. This double remains for the attacks of
tests/security/ and the timeouts of tests/reliability/ written against it, and for what that
chain cannot be made to do: hold a status short of a commitment for as long as a test likes
(the chain's statuses follow its clock), and change a token balance without a transaction. It
executes almost nothing: it remembers the transactions sent to it and answers each method
with a response in the shape the Solana RPC documentation gives (getLatestBlockhash,
getBlockHeight, sendTransaction, getSignatureStatuses, getTransaction with base64 encoding,
getSignaturesForAddress, getBalance, getAccountInfo). Of what a transaction does it applies
only the creation of associated token accounts and TransferChecked between token accounts it
knows. Tests script its behaviour: a preflight failure, a transaction that lands with an
error or never lands, a commitment never reached, a method carried out but never answered,
chosen JSON-RPC error answers to chosen methods (for a number of calls or all), and the block
height (`advance`), past which a blockhash no longer lands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nexus_app.chain import token
from tests.support.asgi import free_port, serving

API_VERSION = "2.1.21"
LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}
INSTRUCTION_ERROR = {"InstructionError": [0, {"Custom": 1}]}
BLOCKHASH_LIFETIME_BLOCKS = 150
TOKEN_ACCOUNT_RENT = 2_039_280
# an error answer: (code, message), answered to every call, or (code, message, calls)
Fault = tuple[int, str] | tuple[int, str, int]


@dataclass
class Landed:
    slot: int
    raw: bytes
    err: dict[str, Any] | None


@dataclass
class RpcDouble:
    port: int = field(default_factory=free_port)
    slot: itertools.count[int] = field(default_factory=lambda: itertools.count(300_000_000))
    landed: dict[str, Landed] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    accounts: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    block_height: int = 250_000_000
    # scripted behaviour
    preflight_error: str | None = None
    land_with_error: bool = False
    never_land: bool = False  # sendTransaction is accepted, the transaction is never processed
    confirmation: str = "finalized"
    stalled: set[str] = field(default_factory=set)  # methods carried out but never answered
    errors: dict[str, Fault] = field(default_factory=dict)  # method -> its error answer
    answered_errors: list[str] = field(default_factory=list)  # methods answered with an error

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def context(self) -> dict[str, Any]:
        return {"slot": next(self.slot), "apiVersion": API_VERSION}

    def advance(self, blocks: int) -> None:
        """Make `blocks` new blocks: blockhashes whose last valid height is passed expire."""
        self.block_height += blocks

    def _fault(self, method: str) -> RpcError | None:
        """The scripted error answer to this call of `method`, if any (counted down)."""
        fault = self.errors.get(method)
        if fault is None:
            return None
        if len(fault) == 3:
            code, message, calls = fault  # type: ignore[misc]
            if calls <= 1:
                del self.errors[method]
            else:
                self.errors[method] = (code, message, calls - 1)
        self.answered_errors.append(method)
        return RpcError({"code": fault[0], "message": fault[1]})

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        method, params = body["method"], body.get("params", [])
        self.calls.append(method)
        answer = self._fault(method) or getattr(self, method)(*params)
        if method in self.stalled:  # the node did the work; its answer never comes
            await asyncio.sleep(3600)
        if isinstance(answer, RpcError):
            return JSONResponse({"jsonrpc": "2.0", "error": answer.error, "id": body["id"]})
        return JSONResponse({"jsonrpc": "2.0", "result": answer, "id": body["id"]})

    # methods, in the documentation's response shapes -----------------------------------------

    def getLatestBlockhash(self, *_: Any) -> dict[str, Any]:
        return {"context": self.context(),
                "value": {"blockhash": str(Hash.new_unique()),
                          "lastValidBlockHeight": self.block_height + BLOCKHASH_LIFETIME_BLOCKS}}

    def getBlockHeight(self, *_: Any) -> int:
        return self.block_height

    def sendTransaction(self, encoded: str, config: dict[str, Any]) -> Any:
        assert config["encoding"] == "base64"
        raw = base64.b64decode(encoded)
        signature = str(VersionedTransaction.from_bytes(raw).signatures[0])
        if self.preflight_error:
            return RpcError({
                "code": -32002,
                "message": f"Transaction simulation failed: {self.preflight_error}",
                "data": {"err": INSTRUCTION_ERROR, "logs": [], "accounts": None,
                         "unitsConsumed": 0, "returnData": None, "innerInstructions": None},
            })
        if self.never_land or signature in self.landed:
            return signature
        landed = Landed(next(self.slot), raw, INSTRUCTION_ERROR if self.land_with_error else None)
        self.landed[signature] = landed
        if landed.err is None:
            self._apply(VersionedTransaction.from_bytes(raw))
        return signature

    def _apply(self, tx: VersionedTransaction) -> None:
        """What the double executes: associated token account creation, and TransferChecked
        between token accounts it holds."""
        keys = list(tx.message.account_keys)
        for ix in tx.message.instructions:
            program = keys[ix.program_id_index]
            accounts = [keys[i] for i in ix.accounts]
            if program == token.ASSOCIATED_TOKEN_PROGRAM_ID and len(accounts) >= 4:
                address, owner, mint = accounts[1], accounts[2], accounts[3]
                self.accounts.setdefault(str(address), (
                    TOKEN_ACCOUNT_RENT, token_account_data(mint, owner, 0),
                    str(token.TOKEN_PROGRAM_ID)))
        for transfer in token.token_transfers(tx):
            self.set_token_amount(transfer.source, -transfer.amount)
            self.set_token_amount(transfer.destination, transfer.amount)

    def set_token_amount(self, address: Pubkey, change: int) -> None:
        found = self.accounts.get(str(address))
        if found is None or len(found[1]) < 72:
            return
        lamports, data, owner = found
        amount = int.from_bytes(data[64:72], "little") + change
        self.accounts[str(address)] = (
            lamports, data[:64] + max(0, amount).to_bytes(8, "little") + data[72:], owner)

    def transfers_to(self, destination: Pubkey) -> list[int]:
        """Amounts of the TransferChecked instructions of processed, successful transactions
        paying into token account `destination`."""
        return [
            transfer.amount
            for landed in self.landed.values() if landed.err is None
            for transfer in token.token_transfers(VersionedTransaction.from_bytes(landed.raw))
            if transfer.destination == destination
        ]

    def getSignatureStatuses(self, signatures: list[str], *_: Any) -> dict[str, Any]:
        def status(signature: str) -> dict[str, Any] | None:
            landed = self.landed.get(signature)
            if landed is None:
                return None
            return {
                "slot": landed.slot, "confirmations": None, "err": landed.err,
                "status": {"Err": landed.err} if landed.err else {"Ok": None},
                "confirmationStatus": self.confirmation,
            }

        return {"context": self.context(), "value": [status(s) for s in signatures]}

    def visible(self, config: dict[str, Any]) -> bool:
        """Whether landed transactions are seen at the commitment a call asks for."""
        asked = config.get("commitment", "finalized")
        return LEVELS[self.confirmation] >= LEVELS[asked]

    def getTransaction(self, signature: str, config: dict[str, Any]) -> Any:
        assert config["encoding"] == "base64"
        landed = self.landed.get(signature)
        if landed is None or not self.visible(config):
            return None
        return {
            "slot": landed.slot,
            "blockTime": 1_700_000_000,
            "version": 0,
            "transaction": [base64.b64encode(landed.raw).decode(), "base64"],
            "meta": {
                "err": landed.err,
                "status": {"Err": landed.err} if landed.err else {"Ok": None},
                "fee": 5000,
                "preBalances": [], "postBalances": [],
                "innerInstructions": [], "logMessages": [],
                "preTokenBalances": [], "postTokenBalances": [], "rewards": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": 4_000,
            },
        }

    def getSignaturesForAddress(
        self, address: str, config: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        config = config or {}
        if not self.visible(config):
            return []
        found = [
            {"signature": signature, "slot": landed.slot, "err": landed.err, "memo": None,
             "blockTime": 1_700_000_000, "confirmationStatus": self.confirmation}
            for signature, landed in reversed(self.landed.items())
            if address in {str(k) for k in
                           VersionedTransaction.from_bytes(landed.raw).message.account_keys}
        ]
        return page_of(found, config.get("before"), config.get("until"),
                       config.get("limit") or 1000)

    def getBalance(self, address: str, *_: Any) -> dict[str, Any]:
        lamports = self.accounts.get(address, (0, b"", ""))[0]
        return {"context": self.context(), "value": lamports}

    def getAccountInfo(self, address: str, *_: Any) -> dict[str, Any]:
        found = self.accounts.get(address)
        value = None if found is None else {
            "data": [base64.b64encode(found[1]).decode(), "base64"], "executable": False,
            "lamports": found[0], "owner": found[2], "rentEpoch": 18446744073709551615,
            "space": len(found[1]),
        }
        return {"context": self.context(), "value": value}


def page_of(newest_first: list[dict[str, Any]], before: str | None, until: str | None,
            limit: int) -> list[dict[str, Any]]:
    """`getSignaturesForAddress` paging: entries older than `before`, newer than `until`."""
    signatures = [entry["signature"] for entry in newest_first]
    start = signatures.index(before) + 1 if before in signatures else 0
    end = signatures.index(until) if until in signatures else len(signatures)
    return newest_first[start:end][:limit]


@dataclass
class RpcError:
    error: dict[str, Any]


def token_account_data(mint: Pubkey, owner: Pubkey, amount: int) -> bytes:
    """An initialized SPL token account's 165 bytes."""
    state = bytes(36) + b"\x01" + bytes(165 - 64 - 8 - 36 - 1)
    return bytes(mint) + bytes(owner) + amount.to_bytes(8, "little") + state


@contextlib.asynccontextmanager
async def rpc_double() -> AsyncIterator[RpcDouble]:
    double = RpcDouble()
    app = Starlette(routes=[Route("/", double.handle, methods=["POST"])])
    async with serving(app, double.port, timeout_graceful_shutdown=1):
        yield double

"""The JSON-RPC node's method table: the reads of `node_reads.py` and the transaction methods
here (blockhashes, send with preflight, simulate, statuses, transactions, signatures per
address, the local airdrop), in the shapes a cluster answers.

A transaction lands when the local chain executes it, in the current slot of the node's clock;
its status then goes processed -> confirmed -> finalized as slots pass (`node_clock.py`). With
preflight, a transaction that would fail is refused (-32002) and nothing lands; without it, a
failing one lands with its error and pays its fee, and one that cannot execute (an unknown or
expired blockhash, a fee payer without SOL) is answered with its signature and never lands,
as on a cluster.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from typing import Any

from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata

from nexus_app.chain.backend import ChainTransaction, TransactionFailed
from nexus_app.chain.local import LocalChain
from nexus_app.chain.node_clock import SlotClock
from nexus_app.chain.node_encoding import (
    InvalidParams,
    b58decode,
    decoded,
    error_json,
    inner_instructions,
    memo_of,
    pubkey,
    simulation_json,
    token_balances,
    transaction_field,
)
from nexus_app.chain.node_faults import Faults
from nexus_app.chain.node_reads import Handler, NodeReads, commitment_of, config_of
from nexus_app.chain.node_store import Landed, NodeStore

MAX_STATUSES = 256
MAX_SIGNATURES = 1000
FAUCET_FLOAT = 10_000 * 1_000_000_000  # lamports the airdrop faucet is topped up with
NOT_SUPPORTED = ('Transaction version (0) is not supported by the requesting client. Please try '
                 'the request again with the following configuration parameter: '
                 '"maxSupportedTransactionVersion": 0')


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def preflight_error(err: Any, data: dict[str, Any]) -> RpcError:
    """-32002, the answer to a transaction its simulation refused."""
    return RpcError(-32002, f"Transaction simulation failed: {error_text(err)}", data)


def error_text(err: Any) -> str:
    """A transaction error as the cluster words it in a preflight message."""
    if isinstance(err, dict) and "InstructionError" in err:
        index, inner = err["InstructionError"]
        what = (f"custom program error: {hex(inner['Custom'])}"
                if isinstance(inner, dict) and "Custom" in inner else str(inner))
        return f"Error processing Instruction {index}: {what}"
    name = next(iter(err)) if isinstance(err, dict) and err else str(err)
    return {"BlockhashNotFound": "Blockhash not found",
            "AlreadyProcessed": "This transaction has already been processed"}.get(name, name)


def decode_transaction(encoded: Any, config: dict[str, Any]) -> VersionedTransaction:
    encoding = config.get("encoding") or "base58"
    if not isinstance(encoded, str) or encoding not in ("base58", "base64"):
        raise InvalidParams(f"Invalid params: unsupported encoding {str(encoding)[:16]!r}")
    try:
        raw = base64.b64decode(encoded, validate=True) if encoding == "base64" else (
            b58decode(encoded))
        return VersionedTransaction.from_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidParams(f"failed to deserialize transaction: {str(exc)[:120]}") from None


class LocalNode:
    """The local chain behind Solana's JSON-RPC methods."""

    def __init__(self, chain: LocalChain, clock: SlotClock, store: NodeStore,
                 faults: Faults | None = None) -> None:
        self.chain, self.clock, self.store = chain, clock, store
        self.faults = faults or Faults()
        self.reads = NodeReads(chain, clock, lambda: store.transaction_count)
        self._withheld: dict[str, int] = {}  # signature -> its blockhash's last valid height
        self._faucet = Keypair()
        names = ("getLatestBlockhash", "isBlockhashValid", "sendTransaction",
                 "simulateTransaction", "getSignatureStatuses", "getTransaction",
                 "getSignaturesForAddress", "requestAirdrop")
        self.methods: dict[str, Handler] = {
            **self.reads.table(), **{name: getattr(self, name) for name in names}}

    # blockhashes ------------------------------------------------------------------------------

    async def getLatestBlockhash(self, *rest: Any) -> dict[str, Any]:
        recent = await self.chain.recent_blockhash()
        return {"context": self.reads.context(config_of(rest, 0)), "value": {
            "blockhash": str(recent.blockhash),
            "lastValidBlockHeight": recent.last_valid_block_height}}

    async def isBlockhashValid(self, blockhash: str, *rest: Any) -> dict[str, Any]:
        try:
            last_valid = self.chain.blockhash_last_valid(Hash.from_string(blockhash))
        except ValueError:
            raise InvalidParams("Invalid param: not a blockhash") from None
        return {"context": self.reads.context(config_of(rest, 0)),
                "value": last_valid is not None and self.clock.height() <= last_valid}

    # sending ----------------------------------------------------------------------------------

    async def sendTransaction(self, encoded: str, *rest: Any) -> str:
        config = config_of(rest, 0)
        tx = decode_transaction(encoded, config)
        signature = str(tx.signatures[0])
        if not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        if not config.get("skipPreflight"):
            await self._preflight(tx)
        if await self.chain.transaction(signature) is None and not self.faults.loses(signature):
            await self.land(tx)
        return signature

    async def _preflight(self, tx: VersionedTransaction) -> None:
        empty: dict[str, Any] = {"err": None, "logs": [], "accounts": None, "unitsConsumed": 0,
                 "returnData": None, "innerInstructions": None}
        if await self.chain.transaction(str(tx.signatures[0])) is not None:
            raise preflight_error("AlreadyProcessed", {**empty, "err": "AlreadyProcessed"})
        last_valid = self.chain.blockhash_last_valid(tx.message.recent_blockhash)
        if last_valid is None or last_valid < self.clock.height():
            raise preflight_error("BlockhashNotFound", {**empty, "err": "BlockhashNotFound"})
        simulated = self.chain.simulate(tx)
        if isinstance(simulated, FailedTransactionMetadata):
            data = simulation_json(simulated)
            raise preflight_error(data["err"], data)

    async def land(self, tx: VersionedTransaction) -> bool:
        """Execute `tx` on the chain and record what a cluster serves of it; False when it
        could not execute (it never lands)."""
        signature = str(tx.signatures[0])
        keys = list(tx.message.account_keys)
        before = [self.chain.account(key) for key in keys]
        # landed with an error, or refused before execution: the chain's record tells which
        with contextlib.suppress(TransactionFailed):
            await self.chain.send(tx)
        executed = self.chain.executed(tx.signatures[0])
        if executed is None or await self.chain.transaction(signature) is None:
            return False
        after = [self.chain.account(key) for key in keys]
        failed = isinstance(executed, FailedTransactionMetadata)
        err, meta = ((error_json(executed.err()), executed.meta())
                     if isinstance(executed, FailedTransactionMetadata) else (None, executed))
        decimals = self.reads.decimals_of([*before, *after])
        self.store.add(signature, Landed(self.clock.height(), int(time.time()), {
            "err": err, "status": {"Err": err} if failed else {"Ok": None},
            "fee": meta.fee(),
            "preBalances": [a.lamports if a else 0 for a in before],
            "postBalances": [a.lamports if a else 0 for a in after],
            "innerInstructions": inner_instructions(meta),
            "logMessages": meta.logs(),
            "preTokenBalances": token_balances(keys, before, decimals),
            "postTokenBalances": token_balances(keys, after, decimals),
            "rewards": [], "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": meta.compute_units_consumed(),
        }))
        if self.faults.withhold:
            last_valid = self.chain.blockhash_last_valid(tx.message.recent_blockhash)
            self._withheld[signature] = last_valid or self.clock.height()
        return True

    async def simulateTransaction(self, encoded: str, *rest: Any) -> dict[str, Any]:
        config = config_of(rest, 0)
        tx = decode_transaction(encoded, config)
        if config.get("sigVerify") and not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        last_valid = self.chain.blockhash_last_valid(tx.message.recent_blockhash)
        if not config.get("replaceRecentBlockhash") and (
            last_valid is None or last_valid < self.clock.height()
        ):
            value: dict[str, Any] = {"err": "BlockhashNotFound", "logs": [], "accounts": None,
                     "unitsConsumed": 0, "returnData": None, "innerInstructions": None}
        else:
            value = simulation_json(self.chain.simulate(tx))
        return {"context": self.reads.context(config), "value": value}

    async def requestAirdrop(self, address: str, lamports: int, *_: Any) -> str:
        """Local only: a real transfer from the node's faucet, confirmed like any other."""
        if not isinstance(lamports, int) or lamports <= 0:
            raise InvalidParams("Invalid params: lamports must be a positive whole number")
        faucet = self._faucet.pubkey()
        if (await self.chain.sol_balance(faucet)) < lamports + 1_000_000:
            self.chain.airdrop(faucet, FAUCET_FLOAT + lamports)
        blockhash = await self.chain.latest_blockhash()
        message = Message.new_with_blockhash([transfer(TransferParams(  # legacy, as a faucet's
            from_pubkey=faucet, to_pubkey=pubkey(address), lamports=lamports))], faucet, blockhash)
        tx = VersionedTransaction(message, [self._faucet])
        if not await self.land(tx):
            raise RpcError(-32603, "Internal error: the airdrop did not execute")
        return str(tx.signatures[0])

    # what landed ------------------------------------------------------------------------------

    def withheld(self, signature: str) -> bool:
        """Whether the fault switch hides this transaction still (until its blockhash
        expires: past that, a cluster that held it back would have to show it)."""
        last_valid = self._withheld.get(signature)
        if last_valid is None:
            return False
        if self.clock.height() > last_valid:
            del self._withheld[signature]
            return False
        return True

    async def found(self, signature: str) -> tuple[ChainTransaction, Landed] | None:
        """A landed transaction with the node's record of it (a bare one, finalized, for a
        transaction the chain processed without the node)."""
        if self.withheld(signature):
            return None
        processed = await self.chain.transaction(signature)
        if processed is None:
            return None
        landed = self.store.get(signature) or Landed(processed.slot, 0, {
            "err": processed.error, "status": {"Err": processed.error} if processed.error
            else {"Ok": None}, "fee": 5000, "preBalances": [], "postBalances": [],
            "innerInstructions": [], "logMessages": [], "preTokenBalances": [],
            "postTokenBalances": [], "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []}})
        return processed, landed

    async def getSignatureStatuses(self, signatures: list[str], *_: Any) -> dict[str, Any]:
        if not isinstance(signatures, list) or len(signatures) > MAX_STATUSES:
            raise InvalidParams(f"Too many inputs provided; max {MAX_STATUSES}")
        value: list[dict[str, Any] | None] = []
        for signature in signatures:
            found = await self.found(str(Signature.from_string(signature)))
            if found is None:
                value.append(None)
                continue
            landed = found[1]
            status, confirmations = self.clock.status(landed.slot)
            value.append({"slot": landed.slot, "confirmations": confirmations,
                          "err": landed.meta["err"], "status": landed.meta["status"],
                          "confirmationStatus": status})
        return {"context": self.reads.context({"commitment": "processed"}), "value": value}

    async def getTransaction(self, signature: str, *rest: Any) -> dict[str, Any] | None:
        # the legacy form gives the encoding alone
        config = {"encoding": rest[0]} if rest and isinstance(rest[0], str) else (
            config_of(rest, 0))
        commitment = self._at_least_confirmed(config)
        found = await self.found(str(Signature.from_string(signature)))
        if found is None or not self.clock.visible(found[1].slot, commitment):
            return None
        processed, landed = found
        encoding = config.get("encoding") or "json"
        meta = landed.meta
        if encoding == "jsonParsed":
            keys = [str(key) for key in processed.transaction.message.account_keys]
            meta = {**meta, "innerInstructions": [
                {"index": inner["index"],
                 "instructions": [decoded(ix, keys) for ix in inner["instructions"]]}
                for inner in meta["innerInstructions"]]}
        answer: dict[str, Any] = {
            "slot": landed.slot, "blockTime": landed.block_time or None,
            "transaction": transaction_field(processed.transaction, encoding), "meta": meta,
        }
        if isinstance(processed.transaction.message, MessageV0):
            if config.get("maxSupportedTransactionVersion") is None:
                raise RpcError(-32015, NOT_SUPPORTED)
            answer["version"] = 0
        elif config.get("maxSupportedTransactionVersion") is not None:
            answer["version"] = "legacy"
        return answer

    async def getSignaturesForAddress(self, address: str, *rest: Any) -> list[dict[str, Any]]:
        config = config_of(rest, 0)
        commitment = self._at_least_confirmed(config)
        limit = config.get("limit") or MAX_SIGNATURES
        if not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNATURES:
            raise InvalidParams(f"Invalid limit; max {MAX_SIGNATURES}")
        entries: list[dict[str, Any]] = []
        before = config.get("before")
        while len(entries) < limit:
            page = await self.chain.signatures_for(pubkey(address), limit, before=before,
                                                   until=config.get("until"))
            for signature in page:
                found = await self.found(signature)
                if found is not None and self.clock.visible(found[1].slot, commitment):
                    entries.append(self._entry(signature, *found))
            if len(page) < limit:
                break
            before = page[-1]
        return entries[:limit]

    def _entry(self, signature: str, processed: ChainTransaction,
               landed: Landed) -> dict[str, Any]:
        return {"signature": signature, "slot": landed.slot, "err": landed.meta["err"],
                "memo": memo_of(processed.transaction), "blockTime": landed.block_time or None,
                "confirmationStatus": self.clock.status(landed.slot)[0]}

    @staticmethod
    def _at_least_confirmed(config: dict[str, Any]) -> str:
        commitment = commitment_of(config)
        if commitment == "processed":
            raise InvalidParams("Method does not support commitment below `confirmed`")
        return commitment

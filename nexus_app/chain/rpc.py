"""The RPC chain: a real Solana cluster (devnet, mainnet, a validator) over JSON-RPC through
`solana-py`, reading and confirming at the configured commitment.

Only the chain's verdict makes a transaction failed: an error status of a processed
transaction, or a `sendTransaction` refused before it was forwarded (preflight, signature,
decoding). Every other error answer, a transport failure or an answer solders cannot read
(it may even panic) is `ChainUnavailable`: the outcome is unknown, and a payout waits for its
blockhash to expire before it may be called failed.
"""

from __future__ import annotations

import asyncio
import time

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.errors import (
    InvalidParamsMessage,
    RpcCustomErrorFieldless,
    SendTransactionPreflightFailureMessage,
    TransactionPrecompileVerificationFailureMessage,
    UnsupportedTransactionVersionMessage,
)
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from nexus_app.chain.backend import (
    ChainError,
    ChainTransaction,
    ChainUnavailable,
    RecentBlockhash,
    TransactionFailed,
    is_panic,
)
from nexus_app.chain.token import token_account_amount

_LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}
ALREADY_PROCESSED = "already been processed"
# error answers to sendTransaction after which the node did not forward the transaction
_REFUSED = (SendTransactionPreflightFailureMessage, InvalidParamsMessage,
            UnsupportedTransactionVersionMessage, TransactionPrecompileVerificationFailureMessage)
_REFUSED_FIELDLESS = (RpcCustomErrorFieldless.TransactionSignatureVerificationFailure,
                      RpcCustomErrorFieldless.TransactionSignatureLenMismatch)
_DETAIL_MAX = 200  # characters of a node's error text kept in a message


def _level(status: TransactionConfirmationStatus) -> int:
    if status == TransactionConfirmationStatus.Finalized:
        return 2
    return 1 if status == TransactionConfirmationStatus.Confirmed else 0


class RpcChain:
    """`Chain` on a cluster's JSON-RPC endpoint."""

    name = "rpc"

    def __init__(self, url: str, commitment: str = "finalized", *, timeout_s: float = 60.0,
                 poll_s: float = 1.0) -> None:
        self.url = url
        self.commitment = Commitment(commitment)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        # no silent resend: a transaction is posted once, so a refusal is about that one post
        self._client = AsyncClient(url, commitment=self.commitment, timeout=min(timeout_s, 30),
                                   max_transport_retries=0)

    async def latest_blockhash(self) -> Hash:
        return (await self.recent_blockhash()).blockhash

    async def recent_blockhash(self) -> RecentBlockhash:
        async with self._calls("getLatestBlockhash"):
            value = (await self._client.get_latest_blockhash()).value
            return RecentBlockhash(value.blockhash, value.last_valid_block_height)

    async def block_height(self) -> int:
        async with self._calls("getBlockHeight"):
            return int((await self._client.get_block_height(self.commitment)).value)

    async def send(self, tx: VersionedTransaction) -> str:
        signature = tx.signatures[0]
        try:
            async with self._calls("sendTransaction"):
                await self._client.send_raw_transaction(bytes(tx), TxOpts(
                    skip_confirmation=True, preflight_commitment=self.commitment,
                ))
        except TransactionFailed as exc:
            if ALREADY_PROCESSED not in str(exc):
                raise
        await self._confirm(signature)
        return str(signature)

    async def _confirm(self, signature: Signature) -> None:
        """Wait until `signature` reaches the commitment; raise `TransactionFailed` if the
        chain says it failed, `ChainUnavailable` if that is not known in time (an error answer
        to one poll is not an outcome: polling goes on)."""
        deadline = time.monotonic() + self.timeout_s
        why = f"not {self.commitment} after {self.timeout_s:.0f} s"
        while True:
            try:
                async with self._calls("getSignatureStatuses"):
                    status = (await self._client.get_signature_statuses([signature])).value[0]
            except ChainUnavailable as exc:
                status, why = None, str(exc)
            if status is not None and status.err is not None:
                raise TransactionFailed(f"transaction failed: {status.err}")
            if status is not None and status.confirmation_status is not None and (
                _level(status.confirmation_status) >= _LEVELS[str(self.commitment)]
            ):
                return
            if time.monotonic() >= deadline:
                raise ChainUnavailable(f"transaction {signature} {why}")
            await asyncio.sleep(self.poll_s)

    async def transaction(self, signature: str) -> ChainTransaction | None:
        async with self._calls("getTransaction"):
            response = await self._client.get_transaction(
                Signature.from_string(signature), encoding="base64",
                commitment=self.commitment, max_supported_transaction_version=0,
            )
            found = response.value
        if found is None:
            return None
        tx = found.transaction.transaction
        meta = found.transaction.meta
        if not isinstance(tx, VersionedTransaction) or meta is None:
            raise ChainUnavailable(f"the RPC node returned transaction {signature} without "
                                   "its bytes or status")
        loaded = meta.loaded_addresses
        loaded_keys = (*loaded.writable, *loaded.readonly) if loaded else ()
        error = None if meta.err is None else str(meta.err)
        return ChainTransaction(signature, found.slot, tx, tuple(loaded_keys), error)

    async def signatures_for(self, address: Pubkey, limit: int = 20, *,
                             before: str | None = None, until: str | None = None) -> list[str]:
        async with self._calls("getSignaturesForAddress"):
            response = await self._client.get_signatures_for_address(
                address, limit=limit, commitment=self.commitment,
                before=Signature.from_string(before) if before else None,
                until=Signature.from_string(until) if until else None,
            )
            return [str(entry.signature) for entry in response.value]

    async def sol_balance(self, owner: Pubkey) -> int:
        async with self._calls("getBalance"):
            return int((await self._client.get_balance(owner)).value)

    async def token_balance(self, token_account: Pubkey) -> int:
        async with self._calls("getAccountInfo"):
            account = (await self._client.get_account_info(token_account)).value
            return token_account_amount(bytes(account.data)) if account else 0

    async def account_exists(self, address: Pubkey) -> bool:
        async with self._calls("getAccountInfo"):
            account = (await self._client.get_account_info(address)).value
            return account is not None and account.lamports > 0

    async def close(self) -> None:
        await self._client.close()

    def _calls(self, method: str) -> _RpcCall:
        return _RpcCall(method)


class _RpcCall:
    """Maps what a call to the node raised to the chain's errors: a refused `sendTransaction`
    -> `TransactionFailed`; any other error answer, no answer, an answer that could not be
    read (solders may return a bare error code or panic on one) -> `ChainUnavailable`."""

    def __init__(self, method: str) -> None:
        self.method = method

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        _: object) -> None:
        if exc is None or isinstance(exc, ChainError):
            return
        if isinstance(exc, RPCException):
            detail = exc.args[0] if exc.args else exc
            message = _clip(getattr(detail, "message", None) or str(detail))
            if self.method == "sendTransaction" and _refused(detail):
                raise TransactionFailed(f"{self.method}: {message}") from None
            raise ChainUnavailable(
                f"the Solana RPC node answered {self.method} with an error: {message}"
            ) from None
        if isinstance(exc, SolanaRpcException | OSError | TimeoutError):
            raise ChainUnavailable(
                f"the Solana RPC node did not answer {self.method} ({type(exc).__name__})"
            ) from None
        if isinstance(exc, Exception) or is_panic(exc):
            raise ChainUnavailable(
                f"the Solana RPC node's answer to {self.method} could not be read "
                f"({type(exc).__name__})"
            ) from None


def _refused(detail: object) -> bool:
    """Whether a `sendTransaction` error answer means the node refused the transaction."""
    if isinstance(detail, RpcCustomErrorFieldless):
        return detail in _REFUSED_FIELDLESS
    return isinstance(detail, _REFUSED)


def _clip(text: str) -> str:
    """A node's error text, one line and bounded (it is shown and logged)."""
    line = " ".join(str(text).split())
    return line if len(line) <= _DETAIL_MAX else line[:_DETAIL_MAX] + "…"

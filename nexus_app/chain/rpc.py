"""The RPC chain: a real Solana cluster (devnet, mainnet, a validator) over JSON-RPC through
`solana-py`, reading and confirming at the configured commitment."""

from __future__ import annotations

import asyncio
import time

from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException, RPCNoResultException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionConfirmationStatus

from nexus_app.chain.backend import ChainTransaction, ChainUnavailable, TransactionFailed
from nexus_app.chain.token import token_account_amount

_LEVELS = {"processed": 0, "confirmed": 1, "finalized": 2}


def _level(status: TransactionConfirmationStatus) -> int:
    if status == TransactionConfirmationStatus.Finalized:
        return 2
    return 1 if status == TransactionConfirmationStatus.Confirmed else 0
ALREADY_PROCESSED = "already been processed"


class RpcChain:
    """`Chain` on a cluster's JSON-RPC endpoint."""

    name = "rpc"

    def __init__(self, url: str, commitment: str = "finalized", *, timeout_s: float = 60.0,
                 poll_s: float = 1.0) -> None:
        self.url = url
        self.commitment = Commitment(commitment)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._client = AsyncClient(url, commitment=self.commitment, timeout=min(timeout_s, 30))

    async def latest_blockhash(self) -> Hash:
        async with self._calls("getLatestBlockhash"):
            return (await self._client.get_latest_blockhash()).value.blockhash

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
        """Wait until `signature` reaches the commitment; raise if it failed or took too long."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            async with self._calls("getSignatureStatuses"):
                status = (await self._client.get_signature_statuses([signature])).value[0]
            if status is not None and status.err is not None:
                raise TransactionFailed(f"transaction failed: {status.err}")
            if status is not None and status.confirmation_status is not None and (
                _level(status.confirmation_status) >= _LEVELS[str(self.commitment)]
            ):
                return
            if time.monotonic() >= deadline:
                raise ChainUnavailable(
                    f"transaction {signature} not {self.commitment} after {self.timeout_s:.0f} s"
                )
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
            return (await self._client.get_balance(owner)).value

    async def token_balance(self, token_account: Pubkey) -> int:
        async with self._calls("getAccountInfo"):
            account = (await self._client.get_account_info(token_account)).value
        return token_account_amount(bytes(account.data)) if account else 0

    async def close(self) -> None:
        await self._client.close()

    def _calls(self, method: str) -> _RpcCall:
        return _RpcCall(method, self.url)


class _RpcCall:
    """Maps solana-py's failures to the chain's: an error answer -> `TransactionFailed`,
    no answer -> `ChainUnavailable`."""

    def __init__(self, method: str, url: str) -> None:
        self.method, self.url = method, url

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        _: object) -> None:
        if isinstance(exc, RPCException | RPCNoResultException):
            detail = exc.args[0] if exc.args else exc
            message = getattr(detail, "message", None) or str(detail)
            raise TransactionFailed(f"{self.method}: {message}") from None
        if isinstance(exc, SolanaRpcException | OSError | TimeoutError | ValueError):
            raise ChainUnavailable(
                f"the Solana RPC node did not answer {self.method} ({type(exc).__name__})"
            ) from None

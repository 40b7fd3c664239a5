"""Open the configured chain backend and the treasury on it."""

from __future__ import annotations

from solders.pubkey import Pubkey

from nexus_app.chain.backend import Chain
from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import Treasury, local_treasury
from nexus_app.chain.wallet import load_keypair, load_or_create_keypair
from nexus_app.config import Settings
from nexus_app.file_modes import require_private


async def connect_chain(settings: Settings) -> tuple[Chain, Treasury]:
    """`local`: the in-process chain in the data dir, its mint and treasury created on first
    start. `rpc`: the cluster at `rpc_url`, with the configured mint and an existing
    treasury keypair (raises `WalletError` without one). A treasury keypair other users can
    read is refused (`InsecureFile`), as ssh refuses such a key."""
    require_private(settings.treasury_path, "treasury keypair")
    if settings.chain == "local":
        chain = LocalChain(settings.local_chain_path)
        keypair = load_or_create_keypair(settings.treasury_path)
        return chain, await local_treasury(chain, keypair, settings.token_decimals)
    if settings.rpc_url is None or settings.mint is None:
        raise ValueError("the rpc chain needs rpc_url and mint")
    from nexus_app.chain.rpc import RpcChain  # solana-py's client: ~0.2 s to import

    rpc = RpcChain(settings.rpc_url, settings.rpc_commitment, timeout_s=settings.chain_timeout_s)
    treasury = Treasury(
        load_keypair(settings.treasury_path), Pubkey.from_string(settings.mint),
        settings.token_decimals,
    )
    return rpc, treasury

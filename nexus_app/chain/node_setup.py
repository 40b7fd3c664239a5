"""What a gateway on `--chain rpc` needs from `nexus-app chain`, done over the node's own
JSON-RPC as any client would: SOL from its airdrop faucet, a $NEXUS mint whose authority is the
treasury keypair, the treasury's token account, and test $NEXUS minted to a wallet (the
faucet a devnet operator runs for its mint)."""

from __future__ import annotations

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.chain.local import LocalChain
from nexus_app.chain.rpc import RpcChain
from nexus_app.chain.treasury import LAMPORTS_PER_SOL, Treasury, create_mint, signed

POLL_S = 0.05


async def airdrop(url: str, owner: Pubkey, lamports: int = LAMPORTS_PER_SOL) -> None:
    """SOL from the node's faucet, confirmed as a wallet confirms it."""
    async with AsyncClient(url) as client:
        signature = (await client.request_airdrop(owner, lamports)).value
        await client.confirm_transaction(signature, Confirmed, sleep_seconds=POLL_S)


async def make_treasury(url: str, keypair: Keypair, decimals: int) -> Treasury:
    """`keypair` with 10 SOL, a new mint it is the authority of, and its token account."""
    await airdrop(url, keypair.pubkey(), 10 * LAMPORTS_PER_SOL)
    chain = RpcChain(url, "confirmed", poll_s=POLL_S)
    try:
        mint = await create_mint(chain, keypair, decimals)
        await chain.send(signed(keypair, [
            token.create_token_account(keypair.pubkey(), keypair.pubkey(), mint),
        ], await chain.latest_blockhash()))
    finally:
        await chain.close()
    return Treasury(keypair, mint, decimals)


async def fund(url: str, treasury: Treasury, owner: Pubkey, amount: int) -> None:
    """1 SOL by airdrop, and `amount` base units of $NEXUS minted into `owner`'s token
    account (created, the treasury paying its rent)."""
    await airdrop(url, owner)
    chain = RpcChain(url, "confirmed", poll_s=POLL_S)
    try:
        await chain.send(treasury.mint_to(owner, amount, await chain.latest_blockhash()))
    finally:
        await chain.close()


async def chain_treasury(url: str, chain: LocalChain, keypair: Keypair,
                         decimals: int) -> Treasury:
    """The chain's $NEXUS mint, kept in its metadata as the in-process local chain keeps it
    (so a data dir's gateway and its `nexus-app chain` share it): made on first start with
    `keypair` as its authority and treasury; the treasury's SOL topped up."""
    existing = chain.meta("mint")
    if existing is None:
        treasury = await make_treasury(url, keypair, decimals)
        chain.set_meta("mint", str(treasury.mint))
        chain.set_meta("decimals", str(decimals))
        return treasury
    if await chain.sol_balance(keypair.pubkey()) < LAMPORTS_PER_SOL:
        await airdrop(url, keypair.pubkey(), 10 * LAMPORTS_PER_SOL)
    return Treasury(keypair, Pubkey.from_string(existing), int(chain.meta("decimals") or decimals))

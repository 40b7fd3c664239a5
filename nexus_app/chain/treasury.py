"""The treasury: the gateway's keypair, the $NEXUS mint, and the treasury token account that
deposits flow into and payouts flow out of. On the local chain the treasury is also the
mint authority, which is what the dev faucet mints with."""

from __future__ import annotations

from dataclasses import dataclass

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.transaction import VersionedTransaction
from spl.token.constants import MINT_LEN
from spl.token.instructions import initialize_mint2
from spl.token.models import InitializeMint2Params

from nexus_app.chain import token
from nexus_app.chain.backend import Chain, ChainError
from nexus_app.chain.local import LocalChain

LAMPORTS_PER_SOL = 1_000_000_000
FEE_FLOAT_LAMPORTS = LAMPORTS_PER_SOL  # SOL the local faucet keeps a wallet topped up to


def signed(payer: Keypair, instructions: list[Instruction], blockhash: Hash,
           *others: Keypair) -> VersionedTransaction:
    message = MessageV0.try_compile(payer.pubkey(), instructions, [], blockhash)
    return VersionedTransaction(message, [payer, *others])


@dataclass(frozen=True, slots=True)
class Treasury:
    keypair: Keypair
    mint: Pubkey
    decimals: int

    @property
    def address(self) -> Pubkey:
        return self.keypair.pubkey()

    @property
    def token_account(self) -> Pubkey:
        return token.associated_token_address(self.address, self.mint)

    def payout(self, owner: Pubkey, amount: int, blockhash: Hash,
               note: str) -> VersionedTransaction:
        """Transfer `amount` to `owner`'s associated token account, which must exist: the
        treasury never pays a worker's account rent (the worker creates it with its own SOL)."""
        destination = token.associated_token_address(owner, self.mint)
        return signed(self.keypair, [
            token.transfer_checked(self.token_account, self.mint, destination, self.address,
                                   amount, self.decimals),
            token.memo(self.address, note),
        ], blockhash)

    def mint_to(self, owner: Pubkey, amount: int, blockhash: Hash) -> VersionedTransaction:
        """Mint new $NEXUS to `owner` (local chain only: the treasury is the mint authority)."""
        destination = token.associated_token_address(owner, self.mint)
        return signed(self.keypair, [
            token.create_token_account(self.address, owner, self.mint),
            token.mint_to(self.mint, destination, self.address, amount, self.decimals),
        ], blockhash)


async def local_treasury(chain: LocalChain, keypair: Keypair, decimals: int) -> Treasury:
    """The local chain's treasury; creates the mint and treasury token account on first start."""
    await top_up_sol(chain, keypair.pubkey())
    existing = chain.meta("mint")
    if existing is not None:
        stored_decimals = int(chain.meta("decimals") or decimals)
        if stored_decimals != decimals:
            raise ChainError(
                f"the local chain's mint has {stored_decimals} decimals, the settings say "
                f"{decimals}; use the same token_decimals or a new data dir"
            )
        return Treasury(keypair, Pubkey.from_string(existing), decimals)
    mint = await create_mint(chain, keypair, decimals)
    await chain.send(signed(keypair, [
        token.create_token_account(keypair.pubkey(), keypair.pubkey(), mint),
    ], await chain.latest_blockhash()))
    chain.set_meta("mint", str(mint))
    chain.set_meta("decimals", str(decimals))
    return Treasury(keypair, mint, decimals)


async def create_mint(chain: Chain, authority: Keypair, decimals: int) -> Pubkey:
    """A new SPL mint whose mint authority is `authority` (which pays for it)."""
    mint = Keypair()
    rent = LAMPORTS_PER_SOL // 100  # well above the rent-exempt minimum of an 82-byte mint
    await chain.send(signed(authority, [
        create_account(CreateAccountParams(
            from_pubkey=authority.pubkey(), to_pubkey=mint.pubkey(), lamports=rent,
            space=MINT_LEN, owner=token.TOKEN_PROGRAM_ID,
        )),
        initialize_mint2(InitializeMint2Params(
            program_id=token.TOKEN_PROGRAM_ID, mint=mint.pubkey(), decimals=decimals,
            mint_authority=authority.pubkey(), freeze_authority=None,
        )),
    ], await chain.latest_blockhash(), mint))
    return mint.pubkey()


async def top_up_sol(chain: LocalChain, owner: Pubkey) -> None:
    """Keep `owner` holding enough SOL for fees and token-account rent (local chain)."""
    balance = await chain.sol_balance(owner)
    if balance < FEE_FLOAT_LAMPORTS // 2:
        chain.airdrop(owner, FEE_FLOAT_LAMPORTS - balance)


async def faucet(chain: LocalChain, treasury: Treasury, owner: Pubkey, amount: int) -> str:
    """Mint `amount` base units of test $NEXUS to `owner` and give it SOL for fees."""
    await top_up_sol(chain, owner)
    await top_up_sol(chain, treasury.address)
    return await chain.send(treasury.mint_to(owner, amount, await chain.latest_blockhash()))

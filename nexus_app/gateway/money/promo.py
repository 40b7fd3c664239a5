"""The promotional pool that backs free credit: funded by the operator with a real transfer
of $NEXUS into the treasury, credited to the pool in the ledger once per signature, after the
transaction is checked on chain (as a deposit is)."""

from __future__ import annotations

from dataclasses import dataclass

from solders.keypair import Keypair
from solders.signature import Signature

from nexus_app.chain.backend import Chain, ChainUnavailable, TransactionFailed
from nexus_app.chain.promo import PromoRejected, build_promo_funding, check_promo_funding
from nexus_app.chain.treasury import Treasury
from nexus_app.gateway.ledger.store import PromoStore


class PromoFundingFailed(Exception):
    """The signature is not a funding of the pool; nothing was credited. Says why."""


@dataclass(frozen=True, slots=True)
class PromoCredit:
    signature: str
    amount: int
    source: str
    credited: bool  # False: this signature was credited before (nothing added now)
    pool: int  # the pool's balance after


async def credit_promo(store: PromoStore, chain: Chain, treasury: Treasury,
                       signature: str) -> PromoCredit:
    """Credit the pool with the funding transaction `signature`, once."""
    try:
        Signature.from_string(signature)
    except ValueError:
        raise PromoFundingFailed(f"'{signature}' is not a transaction signature") from None
    found = await chain.transaction(signature)
    if found is None:
        raise PromoFundingFailed(f"no processed transaction {signature} on the {chain.name} "
                                 "chain (at its commitment) yet")
    try:
        amount, source = check_promo_funding(found, mint=treasury.mint,
                                             treasury=treasury.token_account,
                                             decimals=treasury.decimals)
    except PromoRejected as exc:
        raise PromoFundingFailed(f"not a funding of the pool: {exc}") from None
    if amount <= 0:
        raise PromoFundingFailed("the transfer into the treasury moves nothing")
    credited = await store.credit_promo_funding(signature, amount, str(source))
    return PromoCredit(signature, amount, str(source), credited, await store.promo_pool())


async def fund_promo(store: PromoStore, chain: Chain, treasury: Treasury, source: Keypair,
                     amount: int) -> PromoCredit:
    """Transfer `amount` from `source`'s $NEXUS into the treasury and credit it to the pool.
    When the chain does not confirm it, the error names the signature to credit later."""
    tx = build_promo_funding(source, treasury.mint, treasury.token_account, amount,
                             treasury.decimals, await chain.latest_blockhash())
    signature = str(tx.signatures[0])
    try:
        await chain.send(tx)
    except TransactionFailed as exc:
        raise PromoFundingFailed(f"the transfer failed on chain, nothing moved: {exc}") from None
    except ChainUnavailable as exc:
        raise PromoFundingFailed(
            f"the chain did not confirm the transfer {signature} ({exc}); once it lands, "
            f"credit it with `nexus-app admin promo-credit {signature}`") from None
    return await credit_promo(store, chain, treasury, signature)

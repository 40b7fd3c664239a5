"""The deposit watcher's view of the chain: the treasury token account's signatures it has not
looked at yet, read once per round whatever the number of open intents.

Every deposit is a transfer into the treasury token account, so one
`getSignaturesForAddress(treasury, until=<the newest signature seen>)` a round finds them all
(paging back with `before` when more came than one page holds); a transaction is then matched
to its intent by the reference key it carries. The newest signature looked at is kept in the
store, so a restarted gateway carries on where it stopped; a gateway that never scanned
starts from the newest page only.
"""

from __future__ import annotations

from solders.pubkey import Pubkey

from nexus_app.chain.backend import Chain
from nexus_app.gateway.ledger.store import DepositStore

SCAN_PAGE = 1000  # the most signatures getSignaturesForAddress returns in one call
MAX_MISSES = 5  # rounds a listed transaction may stay unreadable before it is skipped


class TreasuryScan:
    def __init__(self, store: DepositStore, chain: Chain, address: Pubkey,
                 page: int = SCAN_PAGE) -> None:
        self.store = store
        self.chain = chain
        self.address = address
        self.page = page
        self._misses: dict[str, int] = {}

    async def unseen(self) -> list[str]:
        """Signatures newer than the last one seen, oldest first."""
        until = await self.store.deposit_scan_cursor(str(self.address))
        newest_first: list[str] = []
        before: str | None = None
        while True:
            page = await self.chain.signatures_for(self.address, self.page, before=before,
                                                   until=until)
            newest_first += page
            if until is None or len(page) < self.page:  # no cursor yet: the newest page only
                return newest_first[::-1]
            before = page[-1]

    async def seen(self, signature: str) -> None:
        """Everything up to `signature` has been looked at."""
        self._misses.pop(signature, None)
        await self.store.set_deposit_scan_cursor(str(self.address), signature)

    def give_up_on(self, signature: str) -> bool:
        """A listed transaction the node could not return: True once it failed `MAX_MISSES`
        rounds (then it is passed over), False to try it again next round."""
        misses = self._misses[signature] = self._misses.get(signature, 0) + 1
        if misses < MAX_MISSES:
            return False
        del self._misses[signature]
        return True

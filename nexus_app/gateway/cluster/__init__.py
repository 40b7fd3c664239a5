"""What the gateway's replicas share through Redis: rate limits, key revocations, leases
(README: More than one machine). Nothing here holds money: that is in the ledger."""

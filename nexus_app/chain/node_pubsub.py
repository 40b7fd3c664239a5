"""The JSON-RPC node's PubSub over WebSocket (a validator's port + 1): `signatureSubscribe`
and `signatureUnsubscribe`, which is how `@solana/web3.js` and other SDKs confirm a
transaction (`sendAndConfirmTransaction`, `confirmTransaction`).

A subscription notifies once, when the signature reaches the asked commitment (default
finalized), then ends, as on a cluster. Other subscriptions answer "Method not found".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

from nexus_app.chain.node_clock import LAG
from nexus_app.chain.node_methods import LocalNode

LEVEL = {"processed": 0, "confirmed": 1, "finalized": 2}


class PubSub:
    """One WebSocket connection's subscriptions on `node`."""

    def __init__(self, node: LocalNode, send: Any) -> None:
        self.node = node
        self._send = send
        self._ids = itertools.count(1)
        self._watches: dict[int, asyncio.Task[None]] = {}

    async def serve(self, receive: Any) -> None:
        """Answer the connection's requests until it closes."""
        if (await receive())["type"] != "websocket.connect":
            return
        await self._send({"type": "websocket.accept"})
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.request(message.get("text") or (message.get("bytes") or b"").decode())
        finally:
            for watch in self._watches.values():
                watch.cancel()

    async def send(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the client went away: nothing to tell
            await self._send({"type": "websocket.send", "text": json.dumps(payload)})

    async def request(self, text: str) -> None:
        try:
            request = json.loads(text)
            method, ident, params = request["method"], request.get("id"), request.get("params")
        except (ValueError, TypeError, KeyError):
            await self.send({"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32700, "message": "Parse error"}})
            return
        params = params if isinstance(params, list) else []
        if method == "signatureSubscribe" and params and isinstance(params[0], str):
            config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            commitment = config.get("commitment") or "finalized"
            if commitment not in LAG:
                commitment = "finalized"
            subscription = next(self._ids)
            await self.send({"jsonrpc": "2.0", "result": subscription, "id": ident})
            self._watches[subscription] = asyncio.create_task(
                self.watch(subscription, params[0], commitment))
        elif method == "signatureUnsubscribe" and params:
            watch = self._watches.pop(params[0], None) if isinstance(params[0], int) else None
            if watch is not None:
                watch.cancel()
            await self.send({"jsonrpc": "2.0", "result": watch is not None, "id": ident})
        else:
            await self.send({"jsonrpc": "2.0", "id": ident,
                             "error": {"code": -32601, "message": "Method not found"}})

    async def watch(self, subscription: int, signature: str, commitment: str) -> None:
        """Notify once `signature` reaches `commitment` (checked every block)."""
        while True:
            found = await self.node.found(signature)
            if found is not None:
                landed = found[1]
                status, _ = self.node.clock.status(landed.slot)
                if LEVEL[status] >= LEVEL[commitment]:
                    break
            await asyncio.sleep(self.node.clock.block_s)
        self._watches.pop(subscription, None)
        await self.send({"jsonrpc": "2.0", "method": "signatureNotification", "params": {
            "result": {"context": {"slot": self.node.clock.at(commitment)},
                       "value": {"err": landed.meta["err"]}},
            "subscription": subscription}})

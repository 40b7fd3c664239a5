"""The worker socket by hand: its URL, a signed handshake, and why the gateway closed it."""

from __future__ import annotations

import asyncio

import websockets
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Hello,
    ModelCard,
    encode,
    parse_gateway_frame,
    worker_auth_message,
    worker_url,
)
from tests.support.gateways import RunningGateway


def ws_url(gw: RunningGateway) -> str:
    return worker_url(gw.url)


async def handshake(ws, keypair: Keypair | None = None, **hello) -> None:
    keypair = keypair or Keypair()
    challenge = parse_gateway_frame(await ws.recv())
    frame = Hello(protocol=PROTOCOL_VERSION, wallet=str(keypair.pubkey()),
                  signature=sign(keypair, worker_auth_message(challenge.nonce)),
                  models=[ModelCard(id="scripted-model")], **hello)
    await ws.send(encode(frame))


async def closed_reason(ws) -> tuple[int, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason

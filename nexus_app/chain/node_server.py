"""`nexus-app chain`: the local chain served over Solana's JSON-RPC 2.0 on HTTP (POST /, single
and batch requests; GET /health) and its signature subscriptions on WebSocket, so the `rpc`
backend, wallets and SDKs run against real program execution.

A plain ASGI app on uvicorn (the web framework stays at the gateway's edge). The fault switch
(`node_faults.py`) acts here, around each call: latency, an error answer instead of the call,
or the call carried out and its answer never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from solders.keypair import Keypair

from nexus_app.chain.local import LocalChain
from nexus_app.chain.node_clock import CLUSTER_BLOCK_S, SlotClock
from nexus_app.chain.node_encoding import InvalidParams
from nexus_app.chain.node_faults import Faults
from nexus_app.chain.node_methods import LocalNode, RpcError
from nexus_app.chain.node_pubsub import PubSub
from nexus_app.chain.node_setup import chain_treasury
from nexus_app.chain.node_store import NodeStore
from nexus_app.chain.treasury import Treasury

log = logging.getLogger("nexus.chain.node")
DEFAULT_PORT = 8899
MAX_BODY = 1 << 20  # a request larger than a megabyte is no JSON-RPC call of ours
CORS = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"POST, GET"),
        (b"access-control-allow-headers", b"content-type, solana-client")]
DROPPED = object()  # an answer the fault switch keeps


def rpc_error(code: int, message: str, ident: Any, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": ident}


class NodeApp:
    """The ASGI app answering JSON-RPC with `node`'s methods."""

    def __init__(self, node: LocalNode, *, control: bool = False) -> None:
        self.node = node
        self.faults: Faults = node.faults
        self.control = control  # /faults and /advance: for tests of a node run as a process
        self.closing = asyncio.Event()  # set when the node stops: dropped answers end then

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await PubSub(self.node, send).serve(receive)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "OPTIONS":
            await _respond(send, 204, b"", "text/plain")
            return
        if scope["method"] == "GET" and scope["path"] == "/health":
            await _respond(send, 200, b"ok", "text/plain")
            return
        if self.control and scope["path"] in ("/faults", "/advance"):
            await self.controlled(scope, await _body(receive), send)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"POST JSON-RPC requests to /", "text/plain")
            return
        answer = await self.answer(await _body(receive))
        if answer is DROPPED:  # the work is done; the answer is lost on the way
            await self.closing.wait()
            await _respond(send, 503, b"", "text/plain")
            return
        await _respond(send, 200, json.dumps(answer).encode(), "application/json")

    async def controlled(self, scope: dict[str, Any], body: bytes | None, send: Any) -> None:
        """POST /faults sets the fault switch (`Faults.configure`), GET /faults reads what
        happened, POST /advance {"blocks": n} moves the clock."""
        try:
            spec = json.loads(body or b"{}") if scope["method"] == "POST" else {}
            if scope["path"] == "/advance":
                self.node.clock.advance(int(spec["blocks"]))
            elif scope["method"] == "POST":
                self.faults.configure(spec)
        except (ValueError, TypeError, KeyError) as exc:
            await _respond(send, 400, str(exc).encode(), "text/plain")
            return
        await _respond(send, 200, json.dumps(self.faults.record()).encode(), "application/json")

    async def answer(self, body: bytes | None) -> Any:
        try:
            request = json.loads(body) if body is not None else None
        except ValueError:
            request = None
        if body is None or request is None:
            return rpc_error(-32700, "Parse error", None)
        if isinstance(request, list):
            if not request:
                return rpc_error(-32600, "Invalid request", None)
            answers = [await self.call(one) for one in request]
            return DROPPED if DROPPED in answers else answers
        return await self.call(request)

    async def call(self, request: Any) -> Any:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(
                request.get("method"), str):
            return rpc_error(-32600, "Invalid request", None)
        method, ident = request["method"], request.get("id")
        params = request.get("params", [])
        self.faults.calls.append(method)
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        error = self.faults.error_for(method)
        if error is not None:
            return {"jsonrpc": "2.0", "error": error, "id": ident}
        handler = self.node.methods.get(method)
        if handler is None:
            return rpc_error(-32601, "Method not found", ident)
        if not isinstance(params, list):
            return rpc_error(-32602, "Invalid params: params must be an array", ident)
        try:
            result = await handler(*params)
        except RpcError as exc:
            return rpc_error(exc.code, exc.message, ident, exc.data)
        except (InvalidParams, ValueError, TypeError) as exc:
            message = str(exc) if isinstance(exc, InvalidParams) else "Invalid params"
            return rpc_error(-32602, message, ident)
        except Exception:
            log.exception("%s failed", method)
            return rpc_error(-32603, "Internal error", ident)
        if self.faults.drops(method):
            return DROPPED
        return {"jsonrpc": "2.0", "result": result, "id": ident}


async def _body(receive: Any) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body"):
            return body


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), *CORS]})
    await send({"type": "http.response.body", "body": body})


@dataclass
class ChainNode:
    """An opened node: the chain in `data_dir`, its clock, its record, its fault switch."""

    node: LocalNode
    app: NodeApp
    url: str = ""  # where it is served, once it is

    @property
    def clock(self) -> SlotClock:
        return self.node.clock

    @property
    def faults(self) -> Faults:
        return self.node.faults

    @property
    def chain(self) -> LocalChain:
        return self.node.chain

    async def close(self) -> None:
        await self.node.chain.close()
        self.node.store.close()


def open_node(data_dir: Path, block_s: float = CLUSTER_BLOCK_S, *,
              control: bool = False) -> ChainNode:
    """The local chain of `data_dir` (the gateway's `local-chain.sqlite3`, locked while open)
    behind a node whose clock makes a block every `block_s` seconds; with `control`, its
    fault switch and clock answer over HTTP (tests only)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    clock = SlotClock(block_s)
    chain = LocalChain(data_dir / "local-chain.sqlite3", clock=clock.height)
    node = LocalNode(chain, clock, NodeStore(data_dir / "local-chain-node.sqlite3"))
    return ChainNode(node, NodeApp(node, control=control))


def servers_for(node: ChainNode, host: str, port: int) -> list[uvicorn.Server]:
    """HTTP on `port`, and WebSocket PubSub on `port + 1` as a validator serves them (web3.js
    looks for it there); each port answers both."""
    return [uvicorn.Server(uvicorn.Config(node.app, host=host, port=number, lifespan="off",
                                          log_level="warning", timeout_graceful_shutdown=1))
            for number in (port, port + 1)]


@contextlib.asynccontextmanager
async def running_node(data_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                       block_s: float = CLUSTER_BLOCK_S) -> AsyncIterator[ChainNode]:
    """Serve the node in this event loop until the block ends."""
    node = open_node(data_dir, block_s)
    servers = servers_for(node, host, port)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                raise OSError(f"the chain node could not listen on {host}:{port} and "
                              f"{port + 1}")
            await asyncio.sleep(0.01)
        node.url = f"http://{host}:{port}"
        yield node
    finally:
        await _stop(node, servers, tasks)


async def _stop(node: ChainNode, servers: list[uvicorn.Server],
                tasks: list[asyncio.Task[None]]) -> None:
    node.app.closing.set()
    for server in servers:
        server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    await node.close()


async def serve(data_dir: Path, host: str, port: int, block_s: float, treasury: Keypair,
                decimals: int, announce: Callable[[Treasury], None],
                control: bool = False) -> None:
    """`nexus-app chain`: serve until interrupted (either server stopping stops both). Once
    it answers, the chain's $NEXUS mint is made if it has none (`treasury` its authority),
    and `announce`d."""
    node = open_node(data_dir, block_s, control=control)
    servers = servers_for(node, host, port)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                return
            await asyncio.sleep(0.01)
        loopback = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        announce(await chain_treasury(f"http://{loopback}:{port}", node.chain, treasury,
                                      decimals))
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _stop(node, servers, tasks)

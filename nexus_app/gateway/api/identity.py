"""Proof that a gateway on a local port is the one of this data dir.

The terminal app's local mode reuses a gateway already serving its data dir (two gateways
over one data dir would split the local chain's state), but anything can listen on a local
port first. So the app asks for `GET /v1/gateway/proof?nonce=…` and checks the answer: an
HMAC, under a random secret kept in the data dir (mode 0600), of its fresh nonce and the port
the gateway's socket listens on. Only a process that can read the data dir can answer, and an
answer relayed from a gateway on another port does not fit the port asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from fastapi import APIRouter, Request

from nexus_app.contracts import GatewayProof
from nexus_app.gateway.api.deps import GatewayDep
from nexus_app.gateway.errors import BadRequest

PROOF_PATH = "/v1/gateway/proof"
SECRET_FILE = "gateway-identity.key"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")

router = APIRouter()


def identity_secret(data_dir: Path) -> bytes:
    """The data dir's secret, created (0600, whole, never replaced) when it does not exist."""
    path = data_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = data_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.link(draft, path)  # appears with its content, or not at all
    finally:
        draft.unlink()
    return path.read_bytes().strip()


def proof(secret: bytes, nonce: str, port: int) -> str:
    """What a gateway listening on `port` answers for `nonce`."""
    message = f"nexus-local-gateway\n{port}\n{nonce}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@router.get(PROOF_PATH, tags=["network"])
async def gateway_proof(nonce: str, request: Request, gateway: GatewayDep) -> GatewayProof:
    """Prove to the terminal app of this data dir that this gateway is its own."""
    if not _NONCE.fullmatch(nonce):
        raise BadRequest("'nonce' must be 16 to 128 URL-safe characters.", param="nonce")
    server = request.scope.get("server")
    port = int(server[1]) if server else 0
    secret = identity_secret(gateway.settings.data_dir)
    return GatewayProof(proof=proof(secret, nonce, port))

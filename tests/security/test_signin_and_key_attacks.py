"""Attacks on sign-in and API keys, performed for real against a gateway on loopback; each
must fail:

- one address floods sign-in challenges (with no credential, a bogus one, or its own valid
  key) to lock everyone else out;
- many addresses fill the whole challenge book;
- a phishing gateway relays the real gateway's sign-in to a victim's client (rewriting the
  Host header, or passing the victim's on);
- a signature made for another domain is replayed to the gateway;
- a listener squats on the terminal app's local port (or relays a real gateway's proof);
- a key raises its own rate limits above the operator's.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair
from starlette.types import Receive, Scope, Send

from nexus_app.chain.wallet import sign
from nexus_app.client.gateway import ClientError, GatewayClient, SignInRefused
from nexus_app.gateway.api.identity import PROOF_PATH, SECRET_FILE, identity_secret
from nexus_app.gateway.ledger.records import ApiKeyRecord
from nexus_app.siws import SignInMessage, parse
from nexus_app.tui.local_gateway import LocalGateway
from tests.support.asgi import free_port, read_body, serving
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway

FLOOD = 1500  # challenge requests per flooding address


def client_from(address: str, url: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address` (any of 127.0.0.0/8)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=30)


async def flood(http: httpx.AsyncClient, count: int, headers: dict[str, str]) -> list[int]:
    """`count` challenge requests, 50 at a time; their statuses."""
    wallet = str(Keypair().pubkey())
    statuses: list[int] = []
    for start in range(0, count, 50):
        batch = [http.post("/v1/auth/challenge", json={"wallet": wallet}, headers=headers)
                 for _ in range(min(50, count - start))]
        statuses += [r.status_code for r in await asyncio.gather(*batch)]
    return statuses


def sessions_of(gw: RunningGateway, wallet: str) -> int:
    db = sqlite3.connect(gw.settings.db_path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM sessions WHERE account = ?",
                              (wallet,)).fetchone()[0])
    finally:
        db.close()


class PhishingRelay:
    """The attacker's gateway (a test double of a hostile server): it passes every request
    on to the real gateway and the answer back, and notes the paths it relayed."""

    def __init__(self, target: str, *, pass_host: bool = False) -> None:
        self.target, self.pass_host = target, pass_host
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        self.paths.append(scope["path"])
        skip = {b"content-length"} if self.pass_host else {b"content-length", b"host"}
        headers = [(k, v) for k, v in scope["headers"] if k not in skip]
        async with httpx.AsyncClient(base_url=self.target) as http:
            answer = await http.request(scope["method"], scope["path"], content=body,
                                        headers=headers)
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer.content})


class SquatterGateway:
    """A foreign server on the terminal app's port (a test double of another user's process)
    that looks like a NEXUS gateway; its proof is made up, or relayed from `relay_proof_to`."""

    def __init__(self, relay_proof_to: str | None = None) -> None:
        self.relay_proof_to = relay_proof_to
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.paths.append(scope["path"])
        body = b'{"workers_online": 3, "models": []}'
        if scope["path"] == PROOF_PATH:
            body = b'{"proof": "' + b"ab" * 32 + b'"}'
            if self.relay_proof_to:
                query = scope["query_string"].decode()
                async with httpx.AsyncClient() as http:
                    answer = await http.get(f"{self.relay_proof_to}{PROOF_PATH}?{query}")
                body = answer.content
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


# --- item 7: sign-in lockout ------------------------------------------------------------------


@pytest.mark.parametrize("credential", ["none", "bogus", "own key"])
async def test_one_address_flooding_challenges_cannot_lock_others_out(
    tmp_path: Path, credential: str
) -> None:
    settings = make_settings(tmp_path, ip_rate_limit_rpm=300, signin_challenges_per_address=5)
    async with running_gateway(settings) as gw:
        headers = {}
        if credential == "bogus":
            headers = auth("nex_live_" + "x" * 43)
        elif credential == "own key":  # anyone can get a key with a fresh keypair
            headers = auth((await gw.account()).api_key)
        async with client_from("127.0.0.2", gw.url) as attacker:
            statuses = await flood(attacker, FLOOD, headers)
        assert set(statuses) == {200, 429}
        assert statuses.count(429) >= FLOOD - 2 * 300  # at most two one-minute windows pass
        book = gw.gateway.auth.challenges
        assert len(book) <= 5  # the flood holds only its own address's few pending ones

        victim = Keypair()  # another address signs in at once
        async with GatewayClient(gw.url) as client:
            assert (await client.sign_in(victim)).startswith("nex_sess_")
        assert sessions_of(gw, str(victim.pubkey())) == 1
        assert (await gw.store.audit()).ok


async def test_a_flood_from_many_addresses_cannot_fill_the_book_against_a_sign_in(
    tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, ip_rate_limit_rpm=100_000,
                             signin_challenges_per_address=5, signin_challenges_max=40)
    async with running_gateway(settings) as gw:
        for n in range(10, 30):  # 20 addresses x 20 challenges: 400 asked, 40 kept
            async with client_from(f"127.0.0.{n}", gw.url) as attacker:
                assert set(await flood(attacker, 20, auth("nex_sess_bogus"))) == {200}
        assert len(gw.gateway.auth.challenges) == 40
        async with GatewayClient(gw.url) as client:
            assert (await client.sign_in(Keypair())).startswith("nex_sess_")
        assert len(gw.gateway.auth.challenges) <= 40


# --- item 9: sign-in relay (phishing gateway) ------------------------------------------------


@pytest.mark.parametrize("public_url", [False, True])
async def test_a_phishing_relay_gets_no_signature(tmp_path: Path, public_url: bool) -> None:
    port = free_port()
    overrides = {"public_url": f"http://127.0.0.1:{port}"} if public_url else {}
    async with running_gateway(make_settings(tmp_path, port=port, **overrides)) as gw:
        relay = PhishingRelay(gw.url)
        victim = Keypair()
        async with serving(relay) as phishing_url, GatewayClient(phishing_url) as client:
            with pytest.raises(SignInRefused) as refused:
                await client.sign_in(victim)
        assert f"is for '127.0.0.1:{port}'" in refused.value.message
        assert f"talking to {phishing_url}" in refused.value.message
        assert relay.paths == ["/v1/auth/challenge"]  # nothing signed, no login tried
        assert sessions_of(gw, str(victim.pubkey())) == 0


@pytest.mark.parametrize("public_url", [False, True])
async def test_a_relay_passing_the_victims_host_on_gets_no_signature(
    tmp_path: Path, public_url: bool
) -> None:
    """A smarter relay keeps the victim's `Host: <relay>`: without public_url the gateway
    refuses to name a host that is not its own socket; with it, it names its public URL."""
    port = free_port()
    overrides = {"public_url": f"http://127.0.0.1:{port}"} if public_url else {}
    async with running_gateway(make_settings(tmp_path, port=port, **overrides)) as gw:
        relay = PhishingRelay(gw.url, pass_host=True)
        victim = Keypair()
        async with serving(relay) as phishing_url, GatewayClient(phishing_url) as client:
            with pytest.raises(ClientError) as refused:
                await client.sign_in(victim)
        if public_url:
            assert isinstance(refused.value, SignInRefused)
        else:
            assert refused.value.status == 400 and "public_url" in refused.value.message
        assert relay.paths == ["/v1/auth/challenge"]
        assert sessions_of(gw, str(victim.pubkey())) == 0


async def test_a_signature_for_another_domain_is_refused(gw: RunningGateway) -> None:
    victim = Keypair()
    wallet = str(victim.pubkey())
    async with httpx.AsyncClient(base_url=gw.url) as http:
        for with_message in (True, False):
            issued = (await http.post("/v1/auth/challenge", json={"wallet": wallet})).json()
            real = parse(issued["message"])
            assert real is not None and real.domain == gw.url.removeprefix("http://")
            # what the victim signed on the phishing site: the same fields, its own domain
            fields = {name: getattr(real, name) for name in SignInMessage.__slots__}
            forged = SignInMessage(**{**fields, "domain": "nexus-gateway.example",
                                      "uri": "https://nexus-gateway.example"}).text()
            login = {"wallet": wallet, "nonce": issued["nonce"],
                     "signature": sign(victim, forged.encode())}
            if with_message:
                login["message"] = forged
            response = await http.post("/v1/auth/login", json=login)
            assert response.status_code == 401, response.text
            error = response.json()["error"]
            if with_message:
                assert error["code"] == "invalid_message"
                assert "another gateway ('nexus-gateway.example')" in error["message"]
            else:
                assert error["code"] == "invalid_signature"
    assert sessions_of(gw, wallet) == 0


async def test_the_client_checks_address_and_times(gw: RunningGateway) -> None:
    """The client's other checks, against messages a hostile gateway could make up."""
    from nexus_app.client.signin import check_sign_in

    wallet = str(Keypair().pubkey())
    async with httpx.AsyncClient(base_url=gw.url) as http:
        issued = (await http.post("/v1/auth/challenge", json={"wallet": wallet})).json()
    real = parse(issued["message"])
    assert real is not None
    check = {"gateway_url": gw.url, "wallet": wallet, "nonce": real.nonce}
    assert check_sign_in(issued["message"], **check) == real
    fields = {name: getattr(real, name) for name in SignInMessage.__slots__}
    now = time.time()
    cases = {
        "wallet": {"address": str(Keypair().pubkey())},
        "not valid now": {"issued_at": "2020-01-01T00:00:00Z",
                          "expiration_time": "2020-01-01T00:05:00Z"},
        "too long": {"expiration_time": "2099-01-01T00:00:00Z"},
        "URI": {"uri": "https://elsewhere.example"},
    }
    for words, change in cases.items():
        text = SignInMessage(**{**fields, **change}).text()
        with pytest.raises(SignInRefused, match=words):
            check_sign_in(text, **check, now=now)
    with pytest.raises(SignInRefused, match="not a Sign-In-With-Solana"):
        check_sign_in("NEXUS sign-in\nwallet: x\nnonce: y", **check)


# --- item 9: the terminal app's local mode ---------------------------------------------------


async def test_the_local_mode_does_not_trust_a_squatter_on_its_port(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(tmp_path / "data", port=port)
    squatter = SquatterGateway()
    async with serving(squatter, port) as squatter_url:
        local = LocalGateway(settings)
        url = await asyncio.to_thread(local.start)
        try:
            assert url != squatter_url and "not trusted" in local.note
            assert squatter.paths == [PROOF_PATH]  # asked to prove itself, then left alone
            async with GatewayClient(url) as client:  # the app's own gateway works
                assert (await client.sign_in(Keypair())).startswith("nex_sess_")
        finally:
            await asyncio.to_thread(local.stop)


async def test_the_local_mode_does_not_trust_a_relayed_proof(tmp_path: Path) -> None:
    """A squatter that passes the proof request on to the data dir's real gateway (on another
    port) gets an answer bound to that port, which does not fit."""
    data_dir = tmp_path / "data"
    async with running_gateway(make_settings(tmp_path / "real")) as real:
        # a gateway that holds this data dir's secret (its chain is elsewhere: one data dir's
        # chain opens in one process only)
        data_dir.mkdir()
        identity_secret(tmp_path / "real")
        shutil.copy(tmp_path / "real" / SECRET_FILE, data_dir / SECRET_FILE)
        port = free_port()
        squatter = SquatterGateway(relay_proof_to=real.url)
        async with serving(squatter, port) as squatter_url:
            local = LocalGateway(make_settings(data_dir, port=port))
            url = await asyncio.to_thread(local.start)
            try:
                assert url != squatter_url and "not trusted" in local.note
            finally:
                await asyncio.to_thread(local.stop)


async def test_the_local_mode_reuses_its_own_data_dirs_gateway(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    async with running_gateway(settings) as real:
        local = LocalGateway(settings)
        assert await asyncio.to_thread(local.start) == real.url
        assert "this data dir's gateway" in local.note
    assert oct((settings.data_dir / "gateway-identity.key").stat().st_mode & 0o777) == "0o600"


# --- item 10: self-raised rate limits --------------------------------------------------------


async def test_a_key_cannot_raise_its_limits(tmp_path: Path) -> None:
    # the session's own calls count against rate_limit_rpm too: 7 here
    settings = make_settings(tmp_path, rate_limit_rpm=8, rate_limit_tpm=1000)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        account = await gw.account()
        session = auth(account.session)
        for field, most in (("rpm", 8), ("tpm", 1000)):
            for asked in (most + 1, 2**63 - 1):
                response = await http.post("/v1/keys", json={"name": "greedy", field: asked},
                                           headers=session)
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert error["param"] == field
                if asked == most + 1:
                    assert f"at most {most}" in error["message"]
        assert len(await gw.store.list_keys(account.wallet)) == 1  # none was created

        low = (await http.post("/v1/keys", json={"name": "low", "rpm": 2},
                               headers=session)).json()
        statuses = [(await http.get("/v1/balance", headers=auth(low["key"]))).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 429]

        # a key stored with a huge limit before this rule gets the operator's
        old = "nex_live_" + "o" * 43
        from nexus_app.gateway.http.auth import hash_secret
        await gw.store.add_key(ApiKeyRecord(
            id="key_old", account=account.wallet, name="old", prefix=old[:15],
            secret_hash=hash_secret(old), created_at=time.time(), rpm=2**62, tpm=2**62))
        responses = [await http.get("/v1/balance", headers=auth(old)) for _ in range(9)]
        assert [r.status_code for r in responses] == [200] * 8 + [429]
        assert responses[0].headers["x-ratelimit-limit"] == "8"
        listed = {k["name"]: k for k in (await http.get("/v1/keys", headers=session)).json()
                  ["data"]}
        assert (listed["old"]["rpm"], listed["old"]["tpm"]) == (8, 1000)
        assert (listed["low"]["rpm"], listed["low"]["tpm"]) == (2, None)


def test_an_ipv6_host_counts_as_one_address_per_64() -> None:
    """Rotating through the 2^64 addresses of one IPv6 /64 does not escape the limits."""
    from nexus_app.gateway.http.middleware import limit_address

    def bucket(host: str) -> str:
        return limit_address({"client": (host, 1234)})

    assert bucket("2001:db8:1:2::1") == bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert bucket("2001:db8:1:3::1") != bucket("2001:db8:1:2::1")
    assert bucket("::ffff:203.0.113.7") == bucket("203.0.113.7") == "203.0.113.7"

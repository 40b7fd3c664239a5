"""Browsers calling a real gateway from another origin (CORS): preflights answered without a
key or a rate-limit hit, CORS headers on every response to an allowed origin (errors too),
none for other origins, and none at all by default."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nexus_app.config import ConfigError
from tests.support.api import CHAT, assert_openai_error
from tests.support.gateways import auth, make_settings, running_gateway

APP = "https://app.example.com"
# what the official OpenAI SDK for JavaScript asks for in a browser
SDK_HEADERS = ("authorization, content-type, x-stainless-arch, x-stainless-lang, "
               "x-stainless-os, x-stainless-package-version, x-stainless-retry-count, "
               "x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout")


def preflight(origin: str, headers: str = SDK_HEADERS) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers}


async def test_an_allowed_origin_gets_preflights_and_cors_headers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_allowed_origins=[APP + "/"], ip_rate_limit_rpm=10)
    async with running_gateway(settings) as gw, \
            httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        account = await gw.account(credit=100_000)
        await gw.worker()
        before = int((await http.get("/v1/models")).headers["x-ratelimit-remaining"])
        for _ in range(12):  # more than the per-address limit: preflights are not counted
            response = await http.options("/v1/chat/completions", headers=preflight(APP))
            assert response.status_code == 204, response.text
        assert response.headers["access-control-allow-origin"] == APP
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
        assert allowed == {h.strip() for h in SDK_HEADERS.split(",")}
        assert int(response.headers["access-control-max-age"]) >= 600
        assert "origin" in response.headers["vary"].lower()

        listed = await http.get("/v1/models", headers={"Origin": APP})
        assert listed.status_code == 200
        assert int(listed.headers["x-ratelimit-remaining"]) == before - 1
        responses = [
            listed,
            await http.post("/v1/chat/completions", json=CHAT,
                            headers={**auth(account.api_key), "Origin": APP}),
            await http.post("/v1/chat/completions", json=CHAT, headers={"Origin": APP}),
            await http.get("/v1/nothing", headers={"Origin": APP}),
        ]
        assert [r.status_code for r in responses] == [200, 200, 401, 404]
        assert_openai_error(responses[2], 401)
        for response in responses:
            assert response.headers["access-control-allow-origin"] == APP
            exposed = response.headers["access-control-expose-headers"].lower()
            for name in ("x-request-id", "x-ratelimit-remaining", "retry-after"):
                assert name in exposed
            assert response.headers["x-request-id"].startswith("req_")

        async with http.stream("POST", "/v1/chat/completions",
                               json={**CHAT, "stream": True},
                               headers={**auth(account.api_key), "Origin": APP}) as stream:
            assert stream.headers["access-control-allow-origin"] == APP
            assert b"[DONE]" in await stream.aread()


async def test_other_origins_get_no_cors_headers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_allowed_origins=[APP])
    async with running_gateway(settings) as gw, \
            httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        other = "https://evil.example.net"
        response = await http.options("/v1/chat/completions", headers=preflight(other))
        assert response.status_code == 405
        response = await http.get("/v1/models", headers={"Origin": other})
        assert response.status_code == 200
        assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_cors_is_off_by_default_and_any_origin_can_be_allowed(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path / "off")) as gw, \
            httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        response = await http.options("/v1/chat/completions", headers=preflight(APP))
        assert response.status_code == 405
        assert "access-control-allow-origin" not in response.headers
    settings = make_settings(tmp_path / "any", cors_allowed_origins=["*"])
    async with running_gateway(settings) as gw, \
            httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        response = await http.options("/v1/embeddings", headers=preflight("http://localhost:3000"))
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        response = await http.get("/health", headers={"Origin": "http://localhost:3000"})
        assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origin", ["https://app.example.com/chat", "app.example.com", ""])
def test_a_setting_that_is_not_an_origin_is_refused(tmp_path: Path, origin: str) -> None:
    with pytest.raises(ConfigError, match=r"cors_allowed_origins.*is not an origin"):
        make_settings(tmp_path, cors_allowed_origins=[origin])

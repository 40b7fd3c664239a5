"""The terminal app's chat against a server this project did not write: llama-cpp-python's
own OpenAI-compatible server (`python -m llama_cpp.server`, through `tests.support.llama_cpp_amx`)
serving the bundled SmolLM2.
Chat streams; the NEXUS-only screens say they are unavailable instead of failing."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from textual.widgets import Input

from nexus_app.tui.app import NexusApp
from nexus_app.tui.screens.chat import MessageView
from nexus_app.worker.models import bundled_model_path
from tests.support.asgi import free_port
from tests.support.tui import SIZE, text_of, tui_settings, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llama_cpp_amx", "--model", str(bundled_model_path()),
         "--model_alias", "smollm2", "--port", str(port), "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", timeout=1).is_success:
                    break
            assert process.poll() is None, "llama_cpp.server exited"
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(15)


async def test_chat_streams_from_llama_cpp_server(llama_server: str, tmp_path: Path) -> None:
    settings = tui_settings(tmp_path, network="remote", gateway_url=llama_server)
    app = NexusApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.connection.state == "online", 30, "connected")
        assert not app.connection.nexus
        assert "no NEXUS endpoints" in app.sub_title
        await wait_until(pilot, lambda: app.screen.query_one("#model").value == "smollm2",
                         what="the model list")
        app.screen.query_one("#prompt", Input).value = "Say hello."
        await pilot.press("enter")
        views = app.screen.query(MessageView)
        await wait_until(pilot, lambda: len(views) == 2 and "writing" not in str(
            views.last().query_one(".note").render()), 90, "the reply")
        reply = views.last().message
        assert reply.role == "assistant"
        note = str(views.last().query_one(".note").render())
        assert "NEXUS" not in note and "failed" not in note  # no price on this server
        assert app.screen.query_one(".message.assistant Markdown").source.strip()

        for key, screen in (("f3", "wallet"), ("f4", "keys"), ("f5", "worker"),
                            ("f6", "network")):
            await pilot.press(key)
            assert app.current_mode == screen
            notice = text_of(pilot, "#unavailable")
            assert "Unavailable" in notice and "without NEXUS endpoints" in notice
            assert not app.screen.query_one("#body").display


async def test_an_unreachable_gateway_is_a_clear_state(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = NexusApp(tui_settings(tmp_path, network="remote", gateway_url=url))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.connection.state == "unreachable", 20)
        assert "unreachable" in app.sub_title
        app.screen.query_one("#prompt", Input).value = "Hello?"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen.query_one("#prompt", Input).value == "Hello?"  # nothing lost
        await pilot.press("f3")
        assert "unreachable" in text_of(pilot, "#unavailable")

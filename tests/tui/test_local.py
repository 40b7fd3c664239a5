"""The terminal app on a whole local network, under Textual's Pilot: the welcome screen
starts the in-process gateway and chain; faucet, deposit, keys, the worker switch serving
the real SmolLM2 model (its file read with progress), a streamed chat with its cost, the
dashboard's samples, earnings by hour and jobs per model, and a claim."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx
import pytest
from textual.widgets import DataTable, Input, Switch

from nexus_app.tui.app import NexusApp
from nexus_app.tui.conversations import ConversationStore
from nexus_app.tui.screens.chat import MessageView
from nexus_app.tui.screens.dialogs import Confirm, ShowSecret
from tests.support.fake_nvml import FakeGpu, FakeNvml
from tests.support.tui import SIZE, choose_local, text_of, tui_settings, wait_until

pytestmark = pytest.mark.slow


async def test_a_new_user_on_the_local_network(tmp_path: Path) -> None:
    settings = tui_settings(tmp_path)
    nvml = FakeNvml([FakeGpu("NVIDIA GeForce RTX 4090 (fake)", 24 << 30, 20 << 30, 37)])
    app = NexusApp(settings, nvml=nvml)
    async with app.run_test(size=SIZE) as pilot:
        # first run: the welcome screen; choose the local network
        assert type(app.screen).__name__ == "WelcomeScreen"
        await choose_local(pilot)
        await wait_until(pilot, lambda: app.connection.state == "online", 60, "the network")
        assert app.connection.nexus and app.connection.mode == "local"
        saved = tomllib.loads(settings.config.read_text())  # type: ignore[union-attr]
        assert saved["network"] == "local" and saved["api_key"].startswith("nex_live_")
        assert oct(settings.config.stat().st_mode & 0o777) == "0o600"  # type: ignore[union-attr]
        url = app.connection.url

        # wallet: faucet, then a deposit of 25 NEXUS into credit
        assert app.current_mode == "wallet"
        await wait_until(pilot, lambda: "Credit" in text_of(pilot, "#wallet-summary"))
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: "100.000000 NEXUS ·" in text_of(pilot, "#wallet-summary"),
                         what="the faucet")
        app.screen.query_one("#amount", Input).value = "25"
        await pilot.click("#deposit")
        await wait_until(pilot, lambda: "credited" in text_of(pilot, "#deposit-result"),
                         what="the deposit")
        await wait_until(pilot, lambda: "Credit  25.000000 NEXUS" in
                         text_of(pilot, "#wallet-summary"))
        deposits = app.screen.query_one("#deposits", DataTable)
        assert deposits.row_count == 1 and deposits.get_row_at(0)[2] == "credited"

        # keys: create one (shown once), then revoke it; the gateway refuses it at once
        await pilot.press("f4")
        await wait_until(pilot, lambda: app.screen.query_one("#keys", DataTable).row_count == 1,
                         what="the app's own key")
        app.screen.query_one("#key-name", Input).value = "laptop"
        await pilot.click("#create")
        await wait_until(pilot, lambda: isinstance(app.screen, ShowSecret), what="the secret")
        secret = app.screen.secret  # type: ignore[attr-defined]
        assert secret.startswith("nex_live_")
        await pilot.click("#done")
        table = app.screen.query_one("#keys", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        names = [table.get_row_at(i)[0] for i in range(2)]
        table.move_cursor(row=names.index("laptop"))
        await pilot.press("ctrl+d")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.click("#yes")
        await wait_until(pilot, lambda: "revoked" in [table.get_row_at(i)[4]
                                                       for i in range(table.row_count)])
        async with httpx.AsyncClient() as http:
            refused = await http.get(f"{url}/v1/balance",
                                     headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 401

        # worker: the fake GPU's stats, then switch the worker on with the bundled model
        await pilot.press("f5")
        await wait_until(pilot, lambda: "RTX 4090" in text_of(pilot, "#gpu"), what="GPU stats")
        assert "VRAM 4096/24576 MiB" in text_of(pilot, "#gpu")
        await wait_until(pilot, lambda: "smollm2" in str(
            app.screen.query_one("#worker-model").value), what="the bundled model")
        loads: list[tuple[int, int] | None] = []
        app.screen.watch(app, "model_load", lambda load: loads.append(load))
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: "online" in text_of(pilot, "#worker-state"), 60,
                         "the worker online")
        read = [load for load in loads if load is not None]
        assert read[-1][0] == read[-1][1] > 50 << 20  # the whole model file, with progress
        assert not app.screen.query_one("#model-load").display  # hidden once loaded
        assert app.screen.query_one("#worker-switch", Switch).value

        # chat: a streamed reply from the worker, its cost, the balance going down
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.screen.query_one("#model").value
                         == "smollm2-135m-instruct-q4_1", what="the model list")
        prompt = app.screen.query_one("#prompt", Input)
        prompt.value = "Name three colours."
        await pilot.press("enter")
        views = app.screen.query(MessageView)
        await wait_until(pilot, lambda: len(views) == 2 and "NEXUS" in str(
            views.last().query_one(".note").render()), 90, "the reply")
        reply = views.last()
        assert reply.message.role == "assistant"
        note = str(reply.query_one(".note").render())
        assert "tokens" in note and "cancelled" not in note
        await wait_until(pilot, lambda: "credit: 24.9" in text_of(pilot, "#balance"))
        store = ConversationStore(settings.data_dir / "conversations.sqlite3")
        [conversation] = store.recent()
        stored = store.messages(conversation.id)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content.strip() and stored[1].cost and stored[1].cost > 0
        store.close()

        # worker again: the job served, tokens/s recorded, earnings arrived; claim them
        await pilot.press("f5")
        await wait_until(pilot, lambda: "1 served" in text_of(pilot, "#worker-state"))
        await wait_until(pilot, lambda: "claimable 0.000000" not in text_of(pilot, "#earnings"),
                         what="earnings")
        worker_screen = app.screen
        await wait_until(pilot, lambda: len(worker_screen.telemetry.series("tokens_per_s")[1])
                         > 1, what="tokens/s samples")  # type: ignore[attr-defined]
        assert worker_screen.telemetry.latest("vram_used_mb") == 4096  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: "smollm2-135m-instruct-q4_1  1" in
                         text_of(pilot, "#earnings-summary"), what="jobs per model")
        history = worker_screen.history  # type: ignore[attr-defined]
        assert history is not None and sum(hour.jobs for hour in history.data) == 1
        await pilot.press("ctrl+l")
        await wait_until(pilot, lambda: "claimable 0.000000" in text_of(pilot, "#earnings")
                         and "paid 0.000000" not in text_of(pilot, "#earnings"), what="claim")
        await pilot.press("ctrl+q")
    assert not app.is_running

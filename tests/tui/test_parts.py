"""The terminal app's parts without a terminal: the conversation store and its migrations,
saving the config file, and the chat client against a real gateway (with its usage.cost)."""

from __future__ import annotations

import sqlite3
import time
import tomllib
from pathlib import Path

import pytest

from nexus_app.client.chat import ChatClient, api_root
from nexus_app.client.chat_types import Reply
from nexus_app.client.http import ClientError
from nexus_app.config import ConfigError, load_settings, save_config
from nexus_app.contracts import EarningsView
from nexus_app.tui.conversations import MIGRATIONS, ChatTurn, ConversationStore


def test_conversations_are_kept_in_order(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    first, second = store.create("first"), store.create("second")
    store.add(first.id, ChatTurn("user", "hi"), model="m")
    assert [c.title for c in store.recent()] == ["first", "second"]
    store.add(first.id, ChatTurn("assistant", "hello", cost=12, completion_tokens=3))
    store.rename(second.id, "  ")
    assert store.get(second.id).title == "Untitled"  # type: ignore[union-attr]
    assert store.messages(first.id)[1] == ChatTurn("assistant", "hello", 12, 3, False)
    assert store.get(first.id).model == "m"  # type: ignore[union-attr]
    store.delete(first.id)
    assert store.messages(first.id) == [] and [c.title for c in store.recent()] == ["Untitled"]
    store.close()


def test_an_old_database_is_migrated_forward_keeping_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO conversations VALUES (1, 'old', NULL, 0, 0)")
    db.execute("INSERT INTO messages VALUES (1, 1, 'user', 'kept', 0)")
    db.commit()
    db.close()
    store = ConversationStore(path)
    assert store.schema_version == len(MIGRATIONS)
    assert store.messages(1) == [ChatTurn("user", "kept")]
    store.close()
    assert ConversationStore(path).schema_version == len(MIGRATIONS)  # reopening is a no-op


def test_save_config_keeps_other_settings_and_is_private(tmp_path: Path) -> None:
    config = tmp_path / "sub" / "config.toml"
    config.parent.mkdir()
    config.write_text('port = 9001\ntheme = "nord"\n')
    save_config(config, {"network": "local", "api_key": "nex_live_x", "theme": None,
                         "wallet": tmp_path / "w.json"})
    saved = tomllib.loads(config.read_text())
    assert saved == {"port": 9001, "network": "local", "api_key": "nex_live_x",
                     "wallet": str(tmp_path / "w.json")}
    assert config.stat().st_mode & 0o777 == 0o600
    settings = load_settings({"config": config}, environ={})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "nex_live_x"
    assert "nex_live_x" not in repr(settings)  # a secret, even in a repr
    with pytest.raises(ConfigError, match="unknown setting"):
        save_config(config, {"colour": "blue"})


def test_api_root() -> None:
    assert api_root("http://h:1") == api_root("http://h:1/v1/") == "http://h:1/v1"


async def test_chat_client_streams_from_the_gateway_with_its_cost(gw) -> None:
    account = await gw.account(credit=50_000)
    worker = await gw.worker()
    chat = ChatClient(gw.url, account.api_key)
    [model] = await chat.models()
    assert model.id == "scripted-model" and model.workers == 1
    assert model.price is not None and model.price.per_request == 1000
    items = [item async for item in chat.stream("scripted-model",
                                                [{"role": "user", "content": "hi"}])]
    *texts, end = items
    assert "".join(texts) == "".join(worker.tokens())  # type: ignore[arg-type]
    assert isinstance(end, Reply) and end.finish_reason == "stop"
    assert end.completion_tokens == len(worker.tokens()) and end.cost == 1000
    balance = await gw.store.balance(account.wallet)
    assert balance.available == 50_000 - end.cost
    assert (await chat.balance()).balance == balance.available  # parsed as a BalanceView
    with pytest.raises(ClientError, match="model") as refused:
        async for _ in chat.stream("no-such-model", [{"role": "user", "content": "hi"}]):
            pass
    assert refused.value.status == 404
    await chat.aclose()
    stranger = ChatClient(gw.url, "nex_live_wrong")
    with pytest.raises(ClientError) as refused:
        async for _ in stranger.stream("scripted-model", [{"role": "user", "content": "hi"}]):
            pass
    assert refused.value.status == 401
    await stranger.aclose()


async def test_a_crash_shows_no_local_variables(tmp_path: Path) -> None:
    """A fault's traceback is printed without locals: one may be a key or a prompt."""
    from nexus_app.tui.app import NexusApp
    from tests.support.tui import tui_settings

    def fault() -> None:
        api_key = "nex_live_" + "must_not_show".upper()  # not in the source lines shown
        raise RuntimeError(f"fault with a key of {len(api_key)} characters")

    app = NexusApp(tui_settings(tmp_path))
    async with app.run_test():
        try:
            fault()
        except RuntimeError:
            app._fatal_error()
        printed = "".join(segment.text for renderable in app._exit_renderables
                          for segment in renderable.segments)  # type: ignore[attr-defined]
    assert "RuntimeError" in printed and "fault with a key" in printed
    assert "MUST_NOT_SHOW" not in printed


def test_the_earnings_line_shows_a_hold_and_a_bench() -> None:
    from nexus_app.tui.screens.worker import earnings_line

    earnings = EarningsView(
        wallet="w", earned=2_000_000, paid=0, paying=0, pending=2_000_000,
        earned_display="2.0", paid_display="0", paying_display="0", pending_display="2.0",
        claimable_from=None, min_payout=1, min_payout_display="0.000001", state="ok",
        decimals=6, payouts=[])
    now = time.time()
    assert earnings_line(earnings, now) == ("earned 2.0 · paid 0 · paying 0 · "
                                            "claimable 2.0 NEXUS")
    held = earnings_line(earnings.model_copy(
        update={"claimable_from": int(now) + 600, "state": "paused"}), now)
    assert "held until" in held and "paused after failed jobs" in held
    assert "held" not in earnings_line(
        earnings.model_copy(update={"claimable_from": int(now) - 1}), now)


def test_the_dashboard_keeps_an_hour_of_samples_and_sums_earnings() -> None:
    from nexus_app.contracts import EarningsHistory, EarningsHour
    from nexus_app.tui.telemetry import Sample, Telemetry, by_day, earnings_summary, hourly_rate

    telemetry = Telemetry()
    start = 1_800_000_000.0  # 2027-01-15 08:00 UTC, on the hour
    for minute in range(90):
        telemetry.add(Sample(start + minute * 60, tokens_per_s=float(minute),
                             gpu_util=None if minute % 2 else 50.0))
    xs, ys = telemetry.series("tokens_per_s", now=start + 89 * 60)
    assert xs[0] == -60 and xs[-1] == 0 and ys[0] == 29 and len(ys) == 61  # the last hour
    assert len(telemetry.series("gpu_util")[1]) == 30  # only the samples that have it
    assert telemetry.latest("gpu_util") == 50 and telemetry.latest("power_w") is None
    xs, ys = telemetry.series("tokens_per_s", now=start + 89 * 60, points=20)
    # means of 3 minutes each (the last span has 4 samples)
    assert len(xs) == 20 and ys[0] == 30 and ys[-1] == 87.5
    assert xs == sorted(xs) and xs[0] >= -60 and xs[-1] <= 0

    def hour(at: int, earned: int) -> EarningsHour:
        return EarningsHour(hour=at, earned=earned, earned_display="", jobs=1)

    hours = [hour(1_800_000_000 - 9 * 3600, 5), hour(1_800_000_000 - 3600, 300),
             hour(1_800_000_000, 100)]  # 23:00 the day before, 07:00 and 08:00 UTC
    assert by_day(hours) == [("2027-01-14", 5), ("2027-01-15", 400)]
    assert by_day(hours, utc_offset_s=-9 * 3600) == [("2027-01-14", 405)]
    # 400 base units over the 1.5 h since 07:00
    assert hourly_rate(hours, start + 1800) == 266
    history = EarningsHistory(wallet="w", since=0, decimals=3, data=hours)
    summary = earnings_summary(history, {"m": 3}, start + 1800)
    assert "Rate now   0.266 NEXUS/h\nPer day    6.384 NEXUS" in summary
    assert summary.endswith("Jobs by model\n  m  3")


def test_chat_settings_are_checked_as_typed() -> None:
    from nexus_app.tui.conversations import ChatSettings
    from nexus_app.tui.screens.chat_dialogs import parse_settings

    assert parse_settings(" Be brief. ", "0", "0.9", "64") == ChatSettings("Be brief.", 0.0,
                                                                           0.9, 64)
    assert parse_settings("", "", "", "") == ChatSettings()
    for bad, message in ((("", "2.5", "", ""), "Temperature must be between 0 and 2"),
                         (("", "", "x", ""), "Top p must be a number"),
                         (("", "", "", "1.5"), "Max tokens must be a whole number")):
        with pytest.raises(ValueError, match=message):
            parse_settings(*bad)


def test_fit_history_keeps_the_latest_messages_that_fit() -> None:
    from nexus_app.client.chat_types import fit_history

    history = [{"role": "user", "content": "x" * 300}, {"role": "assistant", "content": "y" * 300},
               {"role": "user", "content": "z" * 30}]
    assert fit_history(history, None, 1024) == history
    assert fit_history(history, 1024 + 300, 1024) == history  # 108 + 108 + 18 tokens fit
    assert fit_history(history, 1024 + 200, 1024) == history[1:]
    assert fit_history(history, 1024 + 10, 1024) == history[2:]  # the prompt always goes


def test_the_model_file_is_read_through_with_progress(tmp_path: Path) -> None:
    import threading

    from nexus_app.tui import worker_host

    model = tmp_path / "m.gguf"
    model.write_bytes(bytes(3 * worker_host.READ_CHUNK + 5))
    seen: list[tuple[int, int]] = []
    assert worker_host.read_through(model, lambda done, total: seen.append((done, total)),
                                    threading.Event())
    total = 3 * worker_host.READ_CHUNK + 5
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)

    cancel = threading.Event()

    def stop_at_first_chunk(done: int, total: int) -> None:
        if done:
            cancel.set()

    assert not worker_host.read_through(model, stop_at_first_chunk, cancel)

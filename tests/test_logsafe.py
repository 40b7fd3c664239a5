"""Log hygiene, unit by unit: URLs lose their secrets, peer text cannot break a log line, and
a traceback logged on purpose keeps its lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from nexus_app.logsafe import (
    REDACTED,
    LogHygiene,
    escape_controls,
    redact_url,
    redact_urls,
)


@pytest.mark.parametrize(("url", "safe"), [
    ("https://rpc.example.com/?api-key=SECRET", f"https://rpc.example.com/?{REDACTED}"),
    ("https://user:pw@host:8899/path?x=1#frag", f"https://{REDACTED}@host:8899/path?{REDACTED}"
                                                f"#{REDACTED}"),
    ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ("https://example.com", "https://example.com"),
    ("http://host:99999/", REDACTED),  # not a URL a client could use: nothing of it is kept
])
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_redact_url_can_drop_the_path_some_providers_keep_keys_in() -> None:
    assert redact_url("https://x.quiknode.pro/TOKEN/", keep_path=False) == "https://x.quiknode.pro/…"
    assert redact_url("https://api.devnet.solana.com", keep_path=False) == \
        "https://api.devnet.solana.com"


def test_every_url_in_a_text_is_redacted() -> None:
    text = 'POST https://a/?k=1 "ok" then ws://u:p@b/x'
    assert redact_urls(text) == f'POST https://a/?{REDACTED} "ok" then ws://{REDACTED}@b/x'


def test_control_characters_are_escaped() -> None:
    assert escape_controls("a\nb\rc\x1b[2Jd\x85e\u2028f\u202eg\th") == \
        "a\\nb\\rc\\x1b[2Jd\\x85e\\u2028f\\u202eg\\th"
    assert escape_controls("plain, ünïcode ✓") == "plain, ünïcode ✓"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogHygiene())
    logger = logging.getLogger("tests.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_a_record_with_peer_text_stays_one_short_line(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.warning("worker %s reported %s (%d)", "w1", "x\n2026 INFO forged\x1b[2J" + "A" * 5000,
                   7)
    [line] = stream.getvalue().splitlines()
    assert line.startswith("worker w1 reported x\\n2026 INFO forged\\x1b[2J")
    assert line.endswith("(+4722 chars) (7)") and len(line) < 400


def test_a_traceback_logged_on_purpose_keeps_its_lines(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("job %s failed", "j\n1")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "job j\\n1 failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"

"""Log hygiene: no secret and no forged line reaches a log.

Peers (workers, clients, webhook targets) control many strings the gateway logs: error
codes, model ids, close reasons, exception text. A newline in one forges a log line, a
terminal escape rewrites the operator's screen. URLs carry secrets in their query
(`?api-key=`) and credentials (`user:pass@`). `LogHygiene` is one `logging.Filter` on every
handler the app installs, so no call site can forget: it shortens long arguments, hides the
secret parts of URLs and escapes control characters in the formatted message. A traceback the
app logs on purpose (`exc_info`) is left as it is: its line breaks are its structure.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MAX_ARG_CHARS = 300  # one argument of a log call (a model id, an error code, a URL)
MAX_MESSAGE_CHARS = 4000  # a whole formatted message
REDACTED = "[redacted]"

# Libraries that log at INFO what the operator must not see (httpx: every request's full URL,
# the RPC node's api key and users' webhook URLs included) or that only add noise.
QUIET_LOGGERS = ("httpx", "httpcore", "websockets", "asyncio", "solana", "uvicorn.access",
                 "hpack", "urllib3")

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{0,15}://[^\s\"'<>`]+")
# C0 controls and DEL, C1 controls, Unicode line/paragraph separators, and the bidirectional
# overrides and isolates that make text display in another order than it reads.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """`url` without credentials, query or fragment (each replaced by a marker), and without
    its path when `keep_path` is false (some RPC providers put the api key in the path)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{REDACTED}@" if "@" in parts.netloc else ""
    netloc += host + (f":{port}" if port is not None else "")
    path = parts.path if keep_path else ("/…" if parts.path.strip("/") else parts.path)
    query = REDACTED if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact_urls(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def escape_controls(text: str) -> str:
    """`text` with each control character written as a visible escape (`\\n`, `\\x1b`, …),
    so it stays on one line and cannot drive a terminal."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def shorten(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """`text`, cut to `limit` characters with a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


def clean(text: str) -> str:
    """Peer-controlled text made safe for one log line: short, no secrets in URLs, no control
    characters."""
    return escape_controls(redact_urls(shorten(text, MAX_MESSAGE_CHARS)))


def _clean_arg(value: object) -> object:
    """A log call's argument with long text cut; numbers and the like stay as they are so
    that `%d` and `%.1f` still apply."""
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, BaseException):
        return shorten(str(value))
    return value


class LogHygiene(logging.Filter):
    """Makes each record safe before a handler writes it (see the module's docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_clean_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean_arg(arg) for key, arg in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it itself, with its traceback
            return True
        cleaned = clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
            record.__dict__.pop("color_message", None)  # uvicorn's coloured copy of the raw text
        return True


def guard_handlers(*logger_names: str) -> None:
    """Install `LogHygiene` on every handler of the named loggers ('' is the root), once."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, LogHygiene) for f in handler.filters):
                handler.addFilter(LogHygiene())


def quiet_libraries() -> None:
    """Library loggers at WARNING: their INFO records carry full URLs or only noise."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str) -> None:
    """The logging of the headless gateway and worker: one stderr handler on the root, made
    safe by `LogHygiene`, with library loggers quieted."""
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    guard_handlers("")
    quiet_libraries()

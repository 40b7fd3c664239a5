"""Does the chat screen keep up with a fast model? And how long until the first frame?

1. Streaming: an OpenAI-compatible server on loopback streams a reply at a fixed rate
   (default 500 tokens/s, one token per SSE chunk, Markdown with lists, code and emphasis);
   the real app (headless, 110x34) shows it in the chat screen. Every 50 ms the bench
   compares the tokens sent with the text the Markdown widget holds: the backlog (tokens
   sent but not yet shown) and, at the end, the lag from the last token to the complete
   reply on screen.
2. Startup: seconds from `python -m nexus_app` to the first frame (the welcome text of a
   fresh data dir) in a real terminal (tmux), next to a bare Textual app that shows one line,
   launched the same way in turns with it; the medians and their ratio (needs tmux). Also
   the seconds until the welcome screen can be used (its buttons are shown), and until a
   returning user's chat screen is drawn (a network chosen before, here an unreachable one).

Run: `python bench/tui_stream.py [--rate 500] [--tokens 2000] [--launches 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexus_app.config import load_settings  # noqa: E402
from nexus_app.tui.app import NexusApp  # noqa: E402
from nexus_app.tui.screens.chat import MessageView  # noqa: E402
from tests.support.asgi import free_port  # noqa: E402
from tests.support.tmux_new_user import SOURCE_PROGRAM, first_frame_seconds  # noqa: E402

# the bare app: one line of text, what any Textual app costs before its first frame
BARE_PROGRAM = (sys.executable, "-c", "from textual.app import App\n"
                "from textual.widgets import Static\n"
                "class Bare(App):\n"
                "    def compose(self):\n"
                "        yield Static('Welcome to NEXUS')\n"
                "Bare().run()\n")

WORDS = ["The", " **quick**", " fox", " `jumps`", " over", " the", " lazy", " dog", ".", "\n\n",
         "- item", " one", "\n", "- item", " two", "\n\n", "```python", "\n", "print(", "1)",
         "\n", "```", "\n\n"]


def tokens(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(count)]


def fast_server(rate: float, count: int, sent: list[float]) -> Starlette:
    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fast", "object": "model"}]})

    async def chat(_: Request) -> StreamingResponse:
        async def events():  # type: ignore[no-untyped-def]
            start = time.monotonic()
            for index, token in enumerate(tokens(count)):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                chunk = {"object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": token}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                sent.append(time.monotonic())
            end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": count}}
            yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models),
                             Route("/v1/chat/completions", chat, methods=["POST"])])


async def stream_once(rate: float, count: int) -> dict[str, float]:
    sent: list[float] = []
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fast_server(rate, count, sent), port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.01)
    full = "".join(tokens(count))
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"data_dir": Path(folder), "config": Path(folder) / "c.toml",
                                  "network": "remote",
                                  "gateway_url": f"http://127.0.0.1:{port}"}, environ={})
        app = NexusApp(settings)
        backlog: list[int] = []
        async with app.run_test(size=(110, 34)) as pilot:
            while app.screen.query_one("#model").value != "fast":
                await pilot.pause(0.05)
            app.screen.query_one("#prompt").value = "go"  # type: ignore[attr-defined]
            await pilot.press("enter")
            while len(app.screen.query(MessageView)) < 2:
                await pilot.pause(0.01)
            markdown = app.screen.query(MessageView).last().markdown
            while True:  # sampled at least once, even when a short reply is already shown
                shown = len(markdown.source)
                sent_chars = len("".join(tokens(len(sent))))
                backlog.append(max(0, sent_chars - shown))
                if len(sent) == count and markdown.source == full:
                    break
                await pilot.pause(0.05)
            shown_at = time.monotonic()
    server.should_exit = True
    thread.join(5)
    chars_per_token = len(full) / count
    return {
        "tokens/s sent": count / (sent[-1] - sent[0]),
        "max backlog (tokens)": max(backlog) / chars_per_token,
        "median backlog (tokens)": statistics.median(backlog) / chars_per_token,
        "lag after the last token (ms)": (shown_at - sent[-1]) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--launches", type=int, default=5)
    args = parser.parse_args()
    print(f"streaming {args.tokens} tokens at {args.rate:g} tokens/s into the chat screen")
    for name, value in asyncio.run(stream_once(args.rate, args.tokens)).items():
        print(f"  {name:<32} {value:10.1f}")
    if shutil.which("tmux") and args.launches:
        startup(args.launches)


def startup(launches: int) -> None:
    """First frames of nexus-app and of the bare app, launched in turns so that both see the
    same load on the machine."""
    app: list[float] = []
    bare: list[float] = []
    usable: list[float] = []
    returning: list[float] = []
    chosen = 'network = "remote"\ngateway_url = "http://127.0.0.1:9"\n'
    for _ in range(launches):
        app += first_frame_seconds(SOURCE_PROGRAM, 1)
        bare += first_frame_seconds(BARE_PROGRAM, 1)
        usable += first_frame_seconds(SOURCE_PROGRAM, 1, "Local network on this machine")
        returning += first_frame_seconds(SOURCE_PROGRAM, 1, "New chat", chosen)
    for name, times in (("nexus-app", app), ("bare Textual app", bare)):
        print(f"first frame in tmux, {name:<17} median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s over {len(times)} launches")
    print(f"ratio of the medians: {statistics.median(app) / statistics.median(bare):.2f}")
    print(f"nexus-app's welcome screen usable (buttons shown): median "
          f"{statistics.median(usable):.2f} s")
    print(f"a returning user's chat screen: median {statistics.median(returning):.2f} s "
          f"(ratio {statistics.median(returning) / statistics.median(bare):.2f})")


if __name__ == "__main__":
    main()

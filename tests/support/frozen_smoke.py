"""Smoke test of the frozen build (`packaging/build.sh` runs it on dist/nexus-app/nexus-app).

1. `nexus-app --help` answers.
2. A frozen `--gateway` serves a real chat completion from a frozen `--worker` (the bundled
   SmolLM2 on llama.cpp), paid from credit that frozen `faucet`, `deposit` and `keys create`
   commands set up on the local chain; the ledger audit then passes.
3. The terminal app in tmux: the new user's whole walk (tests/support/tmux_new_user.py), then the
   median time from launch to the first frame over a few launches.

It prints the folder's size and the timings. Run: `python -m tests.support.frozen_smoke PROGRAM`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support import tmux_new_user
from tests.support.asgi import free_port

MODEL = "smollm2-135m-instruct-q4_1"


def check_help(program: Path) -> None:
    done = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--gateway" in done.stdout, done.stderr
    print("--help: ok")


def command(program: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    """Run one management command with --json; returns its JSON answer."""
    done = subprocess.run([program, *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


@contextlib.contextmanager
def background(program: Path, env: dict[str, str], *args: str) -> Iterator[subprocess.Popen]:
    """A frozen process for the duration of the block, then stopped with SIGTERM."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([program, *args], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            yield process
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            process.terminate()
            # uvicorn re-raises SIGTERM after its graceful shutdown
            code = process.wait(timeout=90)
            assert code in (0, -signal.SIGTERM), f"{args} exited {code}"


def wait_until(check: Callable[[], object], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.2)


def check_gateway_and_worker(program: Path, folder: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = {**os.environ, "NEXUS_CONFIG": str(folder / "none.toml"), "NEXUS_LOG_LEVEL": "warning"}
    gateway_env = {**base, "NEXUS_DATA_DIR": str(folder / "gateway")}
    with background(program, gateway_env, "--gateway", "--port", str(port)):
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, "gateway healthy")
        worker_env = {**base, "NEXUS_DATA_DIR": str(folder / "worker")}
        with background(program, worker_env, "--worker", "--gateway", url):
            wait_until(lambda: httpx.get(f"{url}/v1/models").json()["data"], "worker online")
            user = {**base, "NEXUS_DATA_DIR": str(folder / "user")}
            command(program, user, "faucet", "100", "--gateway", url)
            command(program, user, "deposit", "10", "--gateway", url)
            key = command(program, user, "keys", "create", "--name", "smoke", "--gateway", url)
            reply = httpx.post(
                f"{url}/v1/chat/completions", timeout=120,
                headers={"Authorization": f"Bearer {key['key']}"},
                json={"model": MODEL, "max_tokens": 24,
                      "messages": [{"role": "user", "content": "Name a colour."}]},
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["choices"][0]["message"]["content"].strip(), body
            assert body["usage"]["completion_tokens"] > 0 and body["usage"]["cost"] > 0, body
            print(f"gateway + worker chat: ok ({body['usage']['completion_tokens']} tokens, "
                  f"cost {body['usage']['cost']} base units)")
    audit = command(program, gateway_env, "admin", "audit")
    assert audit["ok"] is True, audit
    print("ledger audit after the chat: ok")


def check_terminal_app(program: Path, launches: int) -> None:
    if shutil.which("tmux") is None:
        print("terminal app: SKIPPED, tmux is not installed", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            timings = tmux_new_user.run(Path(folder), free_port(), [str(program)])
        finally:
            tmux_new_user.kill_session()
    print("terminal app, new user's walk: ok (" +
          ", ".join(f"{step} {seconds:.2f} s" for step, seconds in timings.items()) + ")")
    times = tmux_new_user.first_frame_seconds([str(program)], launches)
    print(f"launch to first frame: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {launches} launches")


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("program", type=Path, help="the frozen nexus-app executable")
    parser.add_argument("--launches", type=int, default=5, help="launches timed to first frame")
    args = parser.parse_args(argv)
    program = args.program.resolve()
    print(f"{program.parent}: {folder_size(program.parent) / 2**20:.0f} MiB")
    check_help(program)
    with tempfile.TemporaryDirectory() as folder:
        check_gateway_and_worker(program, Path(folder))
    check_terminal_app(program, args.launches)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drive the real `nexus-app` under tmux as a new user would, checking the screen text at
each step: first run, local network, faucet, deposit, worker on, chat.

Run it alone (`python -m tests.support.tmux_new_user [--program PATH]`) to watch the
timings, or through tests/tui/test_tmux.py; the frozen build's smoke test
(tests/support/frozen_smoke.py) runs it on the frozen program. It prints the seconds from
launch to the first frame.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.asgi import free_port

ROOT = Path(__file__).resolve().parents[2]
SESSION = f"nexus-new-user-{os.getpid()}"
SOURCE_PROGRAM = (sys.executable, "-m", "nexus_app")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(*texts: str, timeout: float = 60.0, poll: float = 0.02) -> float:
    """Seconds until every one of `texts` is on the screen, looking every `poll` seconds;
    fails after `timeout`."""
    start = time.monotonic()
    while True:
        shown = screen()
        if all(text in shown for text in texts):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not on the screen after {timeout} s: {texts}\n{shown}")
        time.sleep(poll)


def kill_session() -> None:
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def keys(*names: str) -> None:
    tmux("send-keys", "-t", SESSION, *names)


def start(program: Sequence[str], env: dict[str, str]) -> float:
    """Open `program` in a detached 110x34 tmux session; returns the launch time."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # COLUMNS and LINES (which test runners may set) would override the terminal's size
    command = f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT))} && {exports} " \
              f"{shlex.join(program)}; echo nexus-app exited $?; sleep 30"
    for _ in range(5):
        launched = time.monotonic()
        opened = subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "110",
                                 "-y", "34", command], capture_output=True, text=True)
        if opened.returncode == 0:
            return launched
        time.sleep(0.5)  # the server of the session just killed may still be exiting
    raise AssertionError(f"tmux new-session failed: {opened.stderr}")


def first_frame_seconds(program: Sequence[str], launches: int,
                        shown: str = "Welcome to NEXUS", config: str = "") -> list[float]:
    """Seconds from launch until `shown` is on the screen (by default the welcome text, the
    first frame), for `launches` runs of `program` on a fresh data dir, with a config file
    holding `config` when one is given (none: a first run). The screen is read every 5 ms:
    at the walk's 20 ms, start-up times fall into steps of about 22 ms."""
    results = []
    for _ in range(launches):
        with tempfile.TemporaryDirectory() as folder:
            env = {"NEXUS_DATA_DIR": folder, "NEXUS_CONFIG": f"{folder}/config.toml"}
            if config:
                Path(folder, "config.toml").write_text(config)
            launched = start(program, env)
            try:
                wait_for(shown, timeout=30, poll=0.005)
                results.append(time.monotonic() - launched)
            finally:
                kill_session()
    return results


def run(data_dir: Path, port: int, program: Sequence[str] = SOURCE_PROGRAM) -> dict[str, float]:
    """Walk through the new user's steps with `program`; returns timings in seconds."""
    env = {"NEXUS_DATA_DIR": str(data_dir), "NEXUS_CONFIG": str(data_dir / "config.toml"),
           "NEXUS_PORT": str(port), "NEXUS_LOG_LEVEL": "warning"}
    launched = start(program, env)
    wait_for("Welcome to NEXUS", timeout=30)
    timings = {"first frame": time.monotonic() - launched}
    wait_for("Local network on this machine")  # the choices follow the first frame
    keys("Enter")  # and the first of them has the focus
    timings["local network up"] = wait_for("local network · online", "Credit", timeout=60)
    keys("C-f")
    wait_for("Faucet: 100.000000 test NEXUS minted", "100.000000 NEXUS ·")
    keys("2", "5", "Enter")
    wait_for("Deposit of 25.000000 NEXUS credited", "Credit  25.000000 NEXUS")
    keys("F5")
    wait_for("smollm2-135m-instruct-q4_1 (bundled)")
    keys("C-t")
    timings["worker online"] = wait_for("State   online", "As      wkr_", timeout=90)
    keys("F2")
    wait_for("smollm2-135m-instruct-q4_1 ·", "credit: 25.000000 NEXUS")
    keys("-l", "Name three colours.")
    keys("Enter")
    timings["chat reply"] = wait_for(" tokens · 0.", timeout=120)
    wait_for("credit: 24.9")
    keys("C-q")
    wait_for("nexus-app exited 0", timeout=90)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--program", help="the nexus-app executable (default: this Python's "
                        "nexus_app package)")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        print("tmux is not installed", file=sys.stderr)
        return 2
    program = [args.program] if args.program else SOURCE_PROGRAM
    with tempfile.TemporaryDirectory() as folder:
        try:
            timings = run(Path(folder), free_port(), program)
        finally:
            kill_session()
    for step, seconds in timings.items():
        print(f"{step:<18} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

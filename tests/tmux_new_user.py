"""Drive the real `nexus-app` under tmux as a new user would, checking the screen text at
each step: first run, local network, faucet, deposit, worker on, chat.

Run it alone (`python -m tests.tmux_new_user`) to watch the timings, or through
tests/test_tui_tmux.py. It prints the seconds from launch to the first frame.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SESSION = f"nexus-new-user-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(*texts: str, timeout: float = 60.0) -> float:
    """Seconds until every one of `texts` is on the screen; fails after `timeout`."""
    start = time.monotonic()
    while True:
        shown = screen()
        if all(text in shown for text in texts):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not on the screen after {timeout} s: {texts}\n{shown}")
        time.sleep(0.02)


def keys(*names: str) -> None:
    tmux("send-keys", "-t", SESSION, *names)


def run(data_dir: Path, port: int) -> dict[str, float]:
    """Walk through the new user's steps; returns timings in seconds."""
    env = {"NEXUS_DATA_DIR": str(data_dir), "NEXUS_CONFIG": str(data_dir / "config.toml"),
           "NEXUS_PORT": str(port), "NEXUS_LOG_LEVEL": "warning"}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # COLUMNS and LINES (which test runners may set) would override the terminal's size
    command = f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT))} && {exports} " \
              f"{shlex.quote(sys.executable)} -m nexus_app; echo nexus-app exited $?; sleep 30"
    launched = time.monotonic()
    tmux("new-session", "-d", "-s", SESSION, "-x", "110", "-y", "34", command)
    wait_for("Welcome to NEXUS", timeout=30)
    timings = {"first frame": time.monotonic() - launched}
    keys("Enter")  # "Local network on this machine" has the focus
    timings["local network up"] = wait_for("local network · online", "Credit", timeout=60)
    keys("C-f")
    wait_for("Faucet: 100.000000 test NEXUS minted", "100.000000 NEXUS ·")
    keys("2", "5", "Enter")
    wait_for("Deposit of 25.000000 NEXUS credited", "Credit  25.000000 NEXUS")
    keys("F5")
    wait_for("smollm2-135m-instruct-q4_1 (bundled)")
    keys("C-t")
    timings["worker online"] = wait_for("State       online as wkr_", timeout=90)
    keys("F2")
    wait_for("smollm2-135m-instruct-q4_1 ·", "credit: 25.000000 NEXUS")
    keys("-l", "Name three colours.")
    keys("Enter")
    timings["chat reply"] = wait_for(" tokens · 0.", timeout=120)
    wait_for("credit: 24.9")
    keys("C-q")
    wait_for("nexus-app exited 0", timeout=90)
    return timings


def main() -> int:
    if shutil.which("tmux") is None:
        print("tmux is not installed", file=sys.stderr)
        return 2
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        try:
            timings = run(Path(folder), port)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    for step, seconds in timings.items():
        print(f"{step:<18} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

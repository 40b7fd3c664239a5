"""A Redis server and a PostgreSQL cluster of a test's own, on free loopback ports, that the
test may stop and start again (the shared servers of the other tests are left alone)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.asgi import free_port


@dataclass
class OwnRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(["redis-cli", "-p", str(self.port), "ping"])

    def stop(self) -> None:
        """Gone at once, as a crash: no persistence, so it comes back empty."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_for(command: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(command, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, f"{command[0]} did not answer"
        time.sleep(0.05)


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    assert found[-1], f"{name} is not installed"
    return str(found[-1])


@dataclass
class OwnPostgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        run_as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        subprocess.run([*run_as, *command], check=True, capture_output=True)

    def start(self) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-l",
                          str(self.data_dir / "log"), "-o",
                          f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1",
                          "start")
        _wait_for([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)])

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, the data stays."""
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    base = Path(tempfile.mkdtemp(prefix="nexus-pg-"))
    base.chmod(0o755)
    server = OwnPostgres(base / "data", free_port())
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server._as_postgres(_bin("initdb"), "-D", str(server.data_dir), "-U", "postgres",
                        "--auth=trust", "--no-sync")
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)

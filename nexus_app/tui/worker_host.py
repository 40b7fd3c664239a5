"""The worker node of the terminal app: a `WorkerNode` run in a thread of its own (with its
own event loop), so loading a model and decoding never touch the UI's loop.

The app creates one host when it starts and drains it on quit; llama.cpp is imported only
when the worker is first switched on (a fast first frame).

Before llama.cpp loads a model the host reads its GGUF file through once, reporting the bytes
read: most of the seconds a large model takes to load are that read, and llama.cpp, which maps
the file, then finds it in the page cache. So the app can show real progress."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nexus_app.worker.status import NodeStatus

if TYPE_CHECKING:
    from nexus_app.config import Settings
    from nexus_app.worker.models import LocalModel
    from nexus_app.worker.node import WorkerNode

LoadProgress = Callable[[int, int], None]  # (bytes read, bytes in the file)
READ_CHUNK = 16 << 20
REPORT_EVERY_S = 0.1


def read_through(path: Path, on_progress: LoadProgress, cancel: threading.Event) -> bool:
    """Read `path` once (into the page cache), reporting progress at most every 0.1 s and
    at the end; False when `cancel` stopped it first."""
    total = path.stat().st_size
    done = 0
    reported = 0.0
    buffer = bytearray(READ_CHUNK)
    on_progress(0, total)
    with path.open("rb", buffering=0) as file:
        while not cancel.is_set():
            count = file.readinto(buffer)
            if not count:
                on_progress(total, total)
                return True
            done += count
            if time.monotonic() - reported >= REPORT_EVERY_S:
                reported = time.monotonic()
                on_progress(done, total)
    return False


class WorkerHost:
    """Starts and stops one worker node serving a model to the gateway in its settings.

    `on_status` is called from the worker's thread with every change of the node's status
    (and with a `stopped` status carrying `last_error` when the node fails to start), and
    `on_load` with the progress of reading the model's file.
    """

    def __init__(self, on_status: Callable[[NodeStatus], None],
                 on_load: LoadProgress | None = None) -> None:
        self.on_status = on_status
        self.on_load = on_load or (lambda done, total: None)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._node: WorkerNode | None = None
        self._stopping: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, settings: Settings, model: LocalModel) -> None:
        """Serve `model` to `settings.gateway_url` with the wallet at `settings.wallet_path`."""
        from nexus_app.chain.wallet import load_or_create_keypair
        from nexus_app.worker.node import WorkerNode

        if self.running:
            return
        keypair = load_or_create_keypair(settings.wallet_path)
        node = WorkerNode(settings, [model], keypair, on_status=self.on_status)
        self._node = node
        self._cancel = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(node, self._loop),
                                        name="nexus-worker", daemon=True)
        self._thread.start()

    def _run(self, node: WorkerNode, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(node))
        finally:
            loop.close()

    async def _serve(self, node: WorkerNode) -> None:
        try:
            for model in node.local_models:
                if not await asyncio.to_thread(read_through, model.path, self.on_load,
                                               self._cancel):
                    self.on_status(NodeStatus(state="stopped",
                                              gateway_url=node.settings.gateway_url))
                    break  # switched off while reading: nothing is loaded
            else:
                await node.start()
                await node.run()
            if self._stopping is not None:
                await self._stopping  # run() returns before stop() has closed the link
        except Exception as exc:  # a model that fails to load must not take the app down
            self.on_status(NodeStatus(state="stopped", gateway_url=node.settings.gateway_url,
                                      last_error=f"{type(exc).__name__}: {exc}"[:200]))
        finally:
            node.close()

    def stop(self, timeout: float = 90.0) -> None:
        """Drain the jobs in flight, disconnect and free the model (blocking)."""
        thread, loop, node = self._thread, self._loop, self._node
        if thread is None or loop is None or node is None:
            return
        if thread.is_alive():
            self._cancel.set()
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                loop.call_soon_threadsafe(self._begin_stop, node)
            thread.join(timeout)
        self._thread = self._loop = self._node = self._stopping = None

    async def drain(self) -> None:
        """`stop()` without blocking the caller's loop (the UI's), if the node runs."""
        if self.running:
            await asyncio.to_thread(self.stop)

    def _begin_stop(self, node: WorkerNode) -> None:
        """In the worker's loop: start draining; `_serve` waits for it before it ends."""
        self._stopping = asyncio.ensure_future(node.stop())

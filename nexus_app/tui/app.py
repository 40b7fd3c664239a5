"""The Textual app: one mode per screen, the link to the network, and the actions registry
wired into key bindings, the command palette and the help screen."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.reactive import reactive
from textual.screen import Screen

from nexus_app.config_sources import ConfigError, Sources
from nexus_app.tui.actions import ACTIONS, SCREENS, bindings
from nexus_app.tui.link import Connection, Link
from nexus_app.tui.messages import FirstFrame, ModelLoadProgress, NodeStatusChanged
from nexus_app.tui.screens import MODES
from nexus_app.tui.worker_host import WorkerHost
from nexus_app.worker.status import NodeStatus

if TYPE_CHECKING:
    from nexus_app.config import Settings
    from nexus_app.worker.models import LocalModel

FIRST_FRAME_WRITTEN_S = 0.05  # from a composed first frame to its last byte in the terminal
# Textual writes frames from its own thread, which waits up to a switch interval (5 ms) for the
# GIL each time it resumes, while this thread works through the start-up: shorter until then.
START_SWITCH_INTERVAL_S = 0.0005


class NexusApp(App[None]):
    """`nexus-app` with no command: chat, wallet, keys, worker, network, settings."""

    TITLE = "NEXUS"
    # nexus_app.assets is the folder assets/ at the top of the repository, not nexus_app/assets/:
    # pyproject.toml maps it into the package ([tool.setuptools.package-dir])
    CSS_PATH = str(files("nexus_app.assets") / "app.tcss")
    BINDINGS = bindings(None)
    MODES = MODES
    DEFAULT_MODE = "chat"
    connection: reactive[Connection] = reactive(Connection, always_update=True)
    node_status: reactive[NodeStatus | None] = reactive(None, always_update=True)
    # (bytes read, bytes) of the model file being loaded; None when no load is under way
    model_load: reactive[tuple[int, int] | None] = reactive(None, always_update=True)
    settings_ready: reactive[bool] = reactive(False)  # see `validate_settings`

    def __init__(self, settings: Settings | Sources, nvml: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`settings`, or their sources (`run_tui`: the first screen is drawn before they are
        validated); `nvml` replaces the pynvml module (a stand-in where no GPU exists);
        `clock` is the time the dashboard plots against (fixed in snapshots)."""
        self.link = Link(settings)
        self._first_run = self.link.peek("network") is None
        if self._first_run:  # the welcome screen, as Textual's default (`get_default_screen`)
            self.DEFAULT_MODE = App.DEFAULT_MODE  # type: ignore[misc]
        super().__init__()
        self.nvml = nvml
        self.clock = clock
        self.worker_host = WorkerHost(self._post_node_status, self._post_load)  # drained on quit
        self.served_model: str | None = None  # the model the worker serves (or last served)
        self.jobs_by_model: dict[str, int] = {}  # jobs the worker served in this session
        self._jobs_counted = 0  # of the running node's jobs_served
        self._switch_interval = sys.getswitchinterval()  # Python's, restored after the start
        theme = self.link.peek("theme")
        self.theme = theme if theme in self.available_themes else self.theme

    def get_default_screen(self) -> Screen[Any]:
        """A first run's screen, the welcome screen: not a mode, whose first screen would
        restyle the whole app once more before the first frame (and the chat is not built)."""
        if not self._first_run:
            return super().get_default_screen()
        from nexus_app.tui.screens.welcome import WelcomeScreen

        return WelcomeScreen()

    @property
    def settings(self) -> Settings:
        return self.link.settings

    def on_load(self) -> None:
        sys.setswitchinterval(START_SWITCH_INTERVAL_S)  # until the settings are validated

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)  # when it ends sooner than that

    def on_mount(self) -> None:
        self.sub_title = "not set up"

    def on_ready(self) -> None:
        """The first frame is drawn: its screen may add the rest. Textual's output thread
        writes the frame to the terminal once this thread lets it have the GIL, so the
        settings (a tenth of a second of importing and validating) wait a little longer."""
        self.screen.post_message(FirstFrame())
        self.set_timer(FIRST_FRAME_WRITTEN_S, self.validate_settings)

    def validate_settings(self) -> bool:
        """Validate the settings if that waited for the first frame (once: a welcome choice
        made sooner does it first) and connect to a network chosen before this start;
        invalid settings end the app with the error. Whether they are valid."""
        if self.settings_ready:
            return True
        sys.setswitchinterval(self._switch_interval)  # the start-up is over
        try:
            network = self.settings.network
        except ConfigError as exc:
            self.exit(return_code=1, message=f"nexus-app: {exc}")
            return False
        self.settings_ready = True
        if network is not None:
            self.reconnect()
        return True

    @work(exclusive=True, group="connect")
    async def reconnect(self) -> None:
        """(Re)connect to the configured network; screens watch `connection`."""
        self.connection = Connection("connecting", self.settings.network,
                                     self.settings.gateway_url)
        self.connection = await self.link.connect()

    def watch_connection(self, connection: Connection) -> None:
        self.sub_title = connection.summary
        if connection.state == "unreachable":
            self.notify(connection.message, title="Not connected", severity="error", timeout=8)
        elif connection.message:
            self.notify(connection.message, title="Local network")

    def start_worker(self, gateway_url: str, model: LocalModel) -> None:
        """Serve `model` from this machine to `gateway_url`, with this session's settings and
        a status at least every second (the worker screen shows it live)."""
        settings = self.settings.model_copy(update={
            "gateway_url": gateway_url,
            "status_interval_s": min(self.settings.status_interval_s, 1.0)})
        self.served_model, self._jobs_counted = model.id, 0
        self.worker_host.start(settings, model)

    def _post_node_status(self, status: NodeStatus) -> None:
        """Called from the worker's thread: hand the status to the UI's loop."""
        self.post_message(NodeStatusChanged(status))

    def _post_load(self, done: int, total: int) -> None:
        self.post_message(ModelLoadProgress(done, total))

    def on_node_status_changed(self, message: NodeStatusChanged) -> None:
        status = message.status
        if self.served_model and status.jobs_served > self._jobs_counted:
            served = status.jobs_served - self._jobs_counted
            self.jobs_by_model[self.served_model] = (
                self.jobs_by_model.get(self.served_model, 0) + served)
            self._jobs_counted = status.jobs_served
        if status.state != "starting":
            self.model_load = None
        self.node_status = status

    def on_model_load_progress(self, message: ModelLoadProgress) -> None:
        self.model_load = (message.done, message.total)

    def action_go(self, mode: str) -> None:
        if isinstance(self.screen, Screen) and self.screen.is_modal:
            self.pop_screen()
        self.switch_mode(mode)

    def action_help(self) -> None:
        from nexus_app.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action in ACTIONS:
            if action.screen is None:
                yield SystemCommand(action.title, action.help,
                                    partial(self.run_action, action.action))
            else:
                yield SystemCommand(f"{SCREENS[action.screen]}: {action.title}", action.help,
                                    partial(self._run_on, action.screen, action.action))

    async def _run_on(self, mode: str, action: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)
        self.call_after_refresh(self.screen.run_action, action)

    async def action_quit(self) -> None:
        self.workers.cancel_all()  # a reply being written ends its job on the worker
        await self.worker_host.drain()
        self.workers.cancel_all()  # and what a screen's timer started while it drained
        await self.link.close()
        self.exit()


    def _fatal_error(self) -> None:
        """Exit after an unhandled error with its traceback, but without Textual's listing
        of local variables: they may hold an API key or a prompt."""
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None)
        self._exit_renderables.append(
            Segments(self.console.render(traceback, self.console.options))
        )
        self._close_messages_no_wait()


def run_tui(sources: Sources) -> int:
    """Run the terminal app; its exit status. The settings are validated once the first frame
    is drawn, except a data dir given as something else than a path (the chat screen opens
    its conversations there before that), which is validated first."""
    if not isinstance(sources.peek("data_dir"), str | os.PathLike | None):
        from nexus_app.config import settings_from

        settings_from(sources)  # raises the ConfigError that says what is wrong
    app = NexusApp(sources)
    app.run()
    return app.return_code or 0

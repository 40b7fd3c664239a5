"""The terminal app's link to a network: the gateway it talks to (the local one it starts,
or a remote URL), the API key it chats with, and a wallet-signed session for the NEXUS
account endpoints. Screens reach the network only through this object."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from nexus_app.client.http import NEXUS_PROBE_PATH, ClientError, is_nexus_answer
from nexus_app.config_sources import Sources, default_config_file, default_data_dir

if TYPE_CHECKING:  # httpx, pydantic and the clients load after the first frame
    from nexus_app.client.chat import ChatClient
    from nexus_app.client.gateway import GatewayClient
    from nexus_app.config import Settings
    from nexus_app.tui.local_gateway import LocalGateway

T = TypeVar("T")
KEY_NAME = "nexus-app terminal"


@dataclass(frozen=True)
class Connection:
    """What the app is connected to, as every screen shows it."""

    state: Literal["setup", "connecting", "online", "unreachable"] = "setup"
    mode: Literal["local", "remote"] | None = None
    url: str = ""
    nexus: bool = False  # the server has the NEXUS endpoints (wallet, keys, worker, network)
    message: str = ""

    @property
    def summary(self) -> str:
        where = "local network" if self.mode == "local" else self.url
        if self.state == "online":
            kind = "" if self.nexus else " (OpenAI-compatible, no NEXUS endpoints)"
            return f"{where} · online{kind}"
        if self.state == "connecting":
            return f"{where} · connecting…"
        if self.state == "unreachable":
            return f"{where} · unreachable"
        return "not set up"


class Link:
    def __init__(self, settings: Settings | Sources) -> None:
        """`settings`, or their sources, validated when first needed (`settings`)."""
        self._sources = settings if isinstance(settings, Sources) else None
        self._settings = None if isinstance(settings, Sources) else settings
        self.connection = Connection()
        self.local: LocalGateway | None = None
        self.chat: ChatClient | None = None
        self._account: GatewayClient | None = None
        self._sign_in_lock = asyncio.Lock()
        self._closed = False  # the app is quitting: no new account calls

    @property
    def settings(self) -> Settings:
        """The validated settings (ConfigError, the first time, when they are not valid)."""
        if self._settings is None:
            from nexus_app.config import settings_from

            assert self._sources is not None
            self._settings = settings_from(self._sources)
        return self._settings

    @property
    def data_dir(self) -> Path:
        """The data dir, read as given while the settings wait to be validated (the chat
        screen's first frame opens its conversations there)."""
        given = self.peek("data_dir")
        return Path(given) if given is not None else default_data_dir()  # type: ignore[arg-type]

    def peek(self, name: str) -> object:
        """A setting for the first frame, without validating the settings first."""
        if self._settings is None and self._sources is not None:
            return self._sources.peek(name)
        return getattr(self.settings, name)

    @property
    def api_key(self) -> str | None:
        key = self.settings.api_key
        return key.get_secret_value() if key else None

    def remember(self, **values: Any) -> None:
        """Save settings in the config file and in this session's settings."""
        from nexus_app.config import Settings, save_config

        save_config(self.settings.config or default_config_file(), values)
        self._settings = Settings.model_validate({**dict(self.settings), **values})

    async def connect(self) -> Connection:
        """Start the local network or reach the remote server, and make sure there is an API
        key to chat with (created with the wallet on a NEXUS gateway when none works)."""
        from nexus_app.client.chat import ChatClient

        mode = self.settings.network
        try:
            if mode == "local":
                url = await self._start_local()
            else:
                url = self.settings.gateway_url.rstrip("/")
            nexus = await self._is_nexus(url)
            self.connection = Connection("connecting", mode, url, nexus)
            if nexus:
                await self._ensure_key(url)
            await self._replace_chat(ChatClient(url, self.api_key))
            note = self.local.note if self.local else ""
            self.connection = Connection("online", mode, url, nexus, note)
        except ClientError as exc:
            self.connection = Connection("unreachable", mode, self.settings.gateway_url,
                                         False, exc.message)
            await self._replace_chat(ChatClient(self.settings.gateway_url, self.api_key))
        return self.connection

    async def _start_local(self) -> str:
        from nexus_app.tui.local_gateway import LocalGateway, LocalGatewayError

        if self.local is None or not self.local.url:
            self.local = LocalGateway(self.settings)
            try:
                await asyncio.to_thread(self.local.start)
            except LocalGatewayError as exc:
                self.local = None
                raise ClientError(str(exc)) from None
        return self.local.url

    async def _is_nexus(self, url: str) -> bool:
        """Whether `url` is a NEXUS gateway (a plain OpenAI-compatible server is not)."""
        import httpx

        async with httpx.AsyncClient(timeout=5) as http:
            try:
                response = await http.get(f"{url}{NEXUS_PROBE_PATH}")
            except httpx.HTTPError as exc:
                raise ClientError(f"cannot reach {url} ({type(exc).__name__})") from None
        return is_nexus_answer(response)

    async def _ensure_key(self, url: str) -> None:
        from nexus_app.client.chat import ChatClient

        key = self.api_key
        if key:
            probe = ChatClient(url, key)
            try:
                await probe.balance()
                return
            except ClientError as exc:
                if exc.status != 401:
                    return
            finally:
                await probe.aclose()
        created = await self.account_call(lambda client: client.create_key(KEY_NAME))
        self.remember(api_key=created.key)

    async def _replace_chat(self, client: ChatClient) -> None:
        old, self.chat = self.chat, client
        if old is not None:
            await old.aclose()

    # --- the wallet-signed session --------------------------------------------------------

    def keypair(self) -> Any:
        from nexus_app.chain.wallet import load_or_create_keypair

        return load_or_create_keypair(self.settings.wallet_path)

    @property
    def wallet(self) -> str:
        return str(self.keypair().pubkey())

    async def account_call(self, call: Callable[[GatewayClient], Awaitable[T]]) -> T:
        """Run `call` with a client signed in with the wallet; signs in (again) when the
        session is missing or expired."""
        client = await self._signed_in(renew=False)
        try:
            return await call(client)
        except ClientError as exc:
            if exc.status != 401:
                raise
        return await call(await self._signed_in(renew=True))

    async def _signed_in(self, renew: bool) -> GatewayClient:
        from nexus_app.client.gateway import GatewayClient

        if not self.connection.nexus:
            raise ClientError("this server has no NEXUS account endpoints")
        if self._closed:  # a screen's timer may still fire while the app quits
            raise ClientError("the app is closing")
        async with self._sign_in_lock:
            if self._account is None or self._account.base_url != self.connection.url:
                if self._account is not None:
                    await self._account.aclose()
                self._account = GatewayClient(self.connection.url)
            if renew or self._account.token is None:
                await self._account.sign_in(self.keypair())
            return self._account

    async def close(self) -> None:
        self._closed = True
        if self.chat is not None:
            await self.chat.aclose()
        if self._account is not None:
            await self._account.aclose()
        if self.local is not None:
            await asyncio.to_thread(self.local.stop)

"""The gateway's settings: a base of `config.Settings` (which adds those of every face, the
clients, the terminal app and the worker), with the checks that involve them."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nexus_app.addresses import is_valid_address

ORIGIN = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+")  # a web origin: scheme://host[:port]


class ModelPrice(BaseModel):
    """Price of one model, in token base units, or pinned to USD (converted at `nexus_usd_rate`)."""

    model_config = ConfigDict(extra="forbid")

    per_request: int = Field(0, ge=0, description="flat fee per request, base units")
    input_per_million: int = Field(0, ge=0, description="per 1M prompt tokens, base units")
    output_per_million: int = Field(0, ge=0, description="per 1M completion tokens, base units")
    usd_per_request: Decimal | None = Field(None, ge=0, description="flat fee in USD (overrides)")
    usd_input_per_million: Decimal | None = Field(
        None, ge=0, description="USD per 1M prompt tokens"
    )
    usd_output_per_million: Decimal | None = Field(
        None, ge=0, description="USD per 1M completion tokens"
    )


class GatewaySettings(BaseModel):
    """The settings `nexus-app gateway` reads (the terminal app's local network too)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # gateway
    host: str = Field("127.0.0.1", description="gateway listen address")
    port: int = Field(8080, ge=0, le=65535, description="gateway listen port")
    chain: Literal["local", "rpc"] = Field("local", description="Solana backend")
    rpc_url: str | None = Field(None, description="Solana RPC URL for --chain rpc")
    rpc_commitment: Literal["processed", "confirmed", "finalized"] = Field(
        "finalized", description="commitment deposits and payouts are checked at (--chain rpc)"
    )
    mint: str | None = Field(
        None, description="$NEXUS mint address for --chain rpc (the local chain makes its own)"
    )
    treasury_keypair: Path | None = Field(
        None, description="treasury keypair file (default: in data dir; created for local chain)"
    )
    faucet_max: Decimal = Field(
        Decimal(10_000), gt=0, description="most NEXUS one faucet call mints (local chain)"
    )
    deposit_intent_ttl_s: int = Field(
        3600, ge=60, description="how long the gateway watches the chain for an intent's deposit"
    )
    deposit_intents_per_account: int = Field(
        10, ge=1, le=10_000, description="open (unexpired, unpaid) deposit intents one account "
        "may hold; asking for more is a 429 with Retry-After"
    )
    deposit_intent_retention_s: int = Field(
        86_400, ge=0, description="how long an expired, never paid deposit intent is kept (a "
        "deposit that lands late is still credited) before it is deleted; paid ones are kept"
    )
    chain_poll_interval_s: float = Field(
        10.0, gt=0, description="period of the deposit watcher and payout reconciler"
    )
    chain_timeout_s: float = Field(
        60.0, gt=0, description="wait for a transaction to reach the commitment"
    )
    token_decimals: int = Field(6, ge=0, le=18, description="decimals of the $NEXUS mint")
    nexus_usd_rate: Decimal | None = Field(None, gt=0, description="USD value of 1 NEXUS")
    worker_share_percent: int = Field(80, ge=0, le=100, description="worker's share of each fee")
    free_credit_weekly: Decimal = Field(
        Decimal(0), ge=0, description="free NEXUS credit per account each week, spent before "
        "paid credit and not carried over (0: off); issued only from the promotional pool "
        "the operator funds on chain (`nexus-app admin fund-promo`): none while it is empty"
    )
    free_credit_weekday: Literal[
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"
    ] = Field("monday", description="the day (00:00 UTC) the weekly free credit renews")
    default_price: ModelPrice = Field(
        default_factory=lambda: ModelPrice(
            per_request=100, input_per_million=50_000, output_per_million=200_000
        ),
        description="price of models without an entry in `prices`",
    )
    prices: dict[str, ModelPrice] = Field(default_factory=dict, description="price per model id")
    rate_limit_rpm: int = Field(600, ge=1, description="requests per minute per API key")
    rate_limit_tpm: int = Field(1_000_000, ge=1, description="tokens per minute per API key")
    ip_rate_limit_rpm: int = Field(
        300, ge=1, description="unauthenticated requests per minute per client address"
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body")
    cors_allowed_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API (CORS), "
        "e.g. `[\"https://app.example.com\"]`; `\"*\"` allows any origin (empty: CORS off)"
    )
    max_frame_bytes: int = Field(1024 * 1024, ge=1024, description="largest worker frame")
    worker_frames_per_s: int = Field(
        10_000, ge=1, description="frames one worker connection may send per second (a "
        "second's worth in a burst); a faster worker is disconnected and its wallet benched"
    )
    relay_bytes_per_token: int = Field(
        256, ge=16, description="bytes of chunk frames a job may relay per token of its "
        "max_tokens (times 2 + top_logprobs when log probabilities are asked); a worker that "
        "sends more fails the job (refunded, earning nothing), is disconnected and benched"
    )
    relay_min_bytes: int = Field(
        16 * 1024, ge=1024, description="the least a job may relay, whatever its max_tokens"
    )
    relay_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="the most a job may relay, whatever its "
        "max_tokens"
    )
    relay_buffer_bytes: int = Field(
        1024 * 1024, ge=1024, description="worker output held for a client that reads a "
        "stream slower than it is produced; past it the job is cancelled and billed for what "
        "was delivered"
    )
    queue_max: int = Field(256, ge=0, description="requests waiting for a free worker slot")
    queue_timeout_s: float = Field(30.0, gt=0, description="wait for a free slot, then 503")
    job_timeout_s: float = Field(300.0, gt=0, description="deadline of one job on a worker")
    dispatch_attempts: int = Field(3, ge=1, description="workers tried before the first token")
    prefix_routing_entries: int = Field(
        32768, ge=0, description="prompt prefixes remembered (as salted hashes, in memory) to "
        "send a conversation's next turn to the worker holding it in cache; 0 turns it off"
    )
    first_token_timeout_s: float = Field(
        60.0, gt=0, description="wait for a worker's first token; then the job is cancelled "
        "there and tried on another worker"
    )
    worker_connections_per_wallet: int = Field(
        8, ge=1, description="worker connections one payout wallet may hold at once"
    )
    worker_connections_per_address: int = Field(
        64, ge=1, description="worker connections one client address (IPv6: one /64 network) "
        "may hold at once, whatever their wallets"
    )
    worker_failures_before_cooldown: int = Field(
        3, ge=1, description="failed jobs in a row after which a worker wallet gets no jobs "
        "for worker_cooldown_s"
    )
    worker_cooldown_s: float = Field(60.0, gt=0, description="length of a worker's cooldown")
    worker_cooldowns_before_pause: int = Field(
        3, ge=1, description="cooldowns with no job served in between after which a worker "
        "wallet is paused for worker_pause_s"
    )
    worker_pause_s: float = Field(3600.0, gt=0, description="length of a worker's pause")
    worker_earnings_hold_s: float = Field(
        0.0, ge=0, description="a new worker wallet's earnings become claimable this long "
        "after its first earning (0: at once)"
    )
    min_payout: Decimal = Field(
        Decimal(1), gt=0, description="least NEXUS a worker may claim at once (each payout "
        "costs the treasury a transaction fee); at most token_decimals decimals"
    )
    session_ttl_s: int = Field(3600, ge=60, description="lifetime of a wallet sign-in session")
    public_url: str | None = Field(
        None, description="the URL clients reach the gateway at (scheme://host[:port][/path]), "
        "named in sign-in messages; unset: the address a client connected to, trusted only "
        "when it is the gateway's own socket address (set it behind a proxy or a DNS name)"
    )
    signin_challenges_per_address: int = Field(
        5, ge=1, le=1000, description="pending sign-in challenges one client address (an IPv6 "
        "/64) may hold; a new one drops its oldest"
    )
    signin_challenges_max: int = Field(
        10_000, ge=1, description="pending sign-in challenges in all; when full, the oldest "
        "is dropped (a flood cannot lock others out)"
    )
    webhook_max_attempts: int = Field(8, ge=1, description="tries of one webhook delivery")
    webhook_retry_base_s: float = Field(
        5.0, gt=0, description="wait before a webhook's second try (x4 per try, up to an hour)"
    )
    webhook_allow_loopback: bool = Field(
        False, description="let webhooks reach this machine's loopback addresses (http:// "
        "too), for receivers beside the gateway; private, link-local and other non-public "
        "addresses are always refused"
    )
    conversation_ttl_s: int = Field(
        30 * 86_400, ge=60, description="how long a stored conversation turn (`userid` history "
        "of /v1/text/generate) or stored response lives before it is deleted"
    )
    conversation_quota_bytes: int = Field(
        10_000_000, ge=0, description="the most bytes of sealed conversation text an account "
        "may keep (0: storing is refused); a request that would pass it is a 403 "
        "conversation_quota_exceeded"
    )
    conversation_history_messages: int = Field(
        40, ge=2, le=1000, description="the most recent messages of a `userid`'s history sent "
        "to the model with its next /v1/text/generate request (billed as prompt tokens)"
    )
    webhook_retention_s: int = Field(
        7 * 86_400, ge=3600, description="how long a delivered or failed webhook event stays "
        "in the delivery log, and how long an account's use of a model counts for "
        "model.unavailable"
    )
    # several replicas (README: More than one machine)
    redis_url: str | None = Field(
        None, description="Redis shared by the gateway's replicas (redis://host:port/db): rate "
        "limits, key revocations, the worker registry, cross-replica jobs and leases (unset: "
        "all in this process); needs --chain rpc"
    )
    redis_prefix: str = Field("nexus:", description="prefix of every Redis key and channel")
    default_max_tokens: int = Field(
        4096, ge=1, description="max_tokens when a request gives none (capped by the context)"
    )
    ledger_url: str | None = Field(
        None, pattern=r"^postgres(ql)?://", description="PostgreSQL ledger, "
        "postgresql://user:password@host:5432/db (default: SQLite in the data dir)"
    )
    ledger_pool_min: int = Field(2, ge=1, le=100, description="PostgreSQL connections kept open")
    ledger_pool_max: int = Field(10, ge=1, le=1000, description="most PostgreSQL connections")
    ledger_sync_commit: bool = Field(
        False, description="PostgreSQL: also reserve, settle and refund wait for the WAL flush "
        "(default: they do not, like SQLite's commits; a database crash may lose the last "
        "fraction of a second of them: jobs unbilled, never billed twice)"
    )
    replica_id: str = Field(
        "main", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="this gateway replica's name: "
        "its reservations are refunded at its start, and by others when it is gone"
    )

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin.rstrip("/")):
                raise ValueError(f"'{origin}' is not an origin: give scheme://host[:port], "
                                 "without a path, or \"*\"")
        return origins

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        from urllib.parse import urlsplit

        from nexus_app.siws import origin

        parts = urlsplit(url.strip())
        if origin(url) is None or parts.query or parts.fragment or parts.username:
            raise ValueError(f"public_url '{url}' is not an http(s) URL of the form "
                             "scheme://host[:port][/path]")
        return url.strip().rstrip("/")

    @model_validator(mode="after")
    def _min_payout_fits_the_mint(self) -> GatewaySettings:
        from nexus_app.units import AmountError, to_base_units

        try:
            to_base_units(self.min_payout, self.token_decimals)
        except AmountError as exc:
            raise ValueError(f"min_payout: {exc}") from None
        return self

    @model_validator(mode="after")
    def _bounds_are_ordered(self) -> GatewaySettings:
        if self.relay_min_bytes > self.relay_max_bytes:
            raise ValueError("relay_min_bytes must not be larger than relay_max_bytes")
        if self.ledger_pool_min > self.ledger_pool_max:
            raise ValueError("ledger_pool_min must not be larger than ledger_pool_max")
        return self

    @model_validator(mode="after")
    def _rpc_chain_is_complete(self) -> GatewaySettings:
        if self.chain == "rpc" and not (self.rpc_url and self.mint):
            raise ValueError("--chain rpc needs rpc_url (--rpc-url) and mint (NEXUS_MINT)")
        if self.mint is not None and not is_valid_address(self.mint):
            raise ValueError(f"mint '{self.mint}' is not a Solana address")
        return self

    @model_validator(mode="after")
    def _replicas_share_one_chain(self) -> GatewaySettings:
        if self.redis_url and self.chain == "local":
            raise ValueError("replicas sharing Redis must share one chain: use --chain rpc "
                             "(`nexus-app chain` serves a local chain over JSON-RPC), not "
                             "each replica's own local chain")
        return self

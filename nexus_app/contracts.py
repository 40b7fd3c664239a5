"""The response bodies of the NEXUS routes (account, keys, deposits, payouts, worker earnings,
models, network stats, webhooks), shared by the gateway, which answers with them
(`response_model=`), and the client, which parses its answers into them.

Fields are in the order the gateway writes them. Amounts are integers of the token's base
units, each with a `*_display` string in NEXUS; times are Unix seconds. Unknown fields are
ignored when parsing, so a client keeps working against a gateway that adds some. The OpenAI
routes are not here: they answer OpenAI's own shapes."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

Item = TypeVar("Item", bound=BaseModel)

PayoutState = Literal["pending", "sent", "paid", "failed"]
DepositState = Literal["pending", "credited", "expired"]
DeliveryState = Literal["pending", "delivered", "failed"]
WorkerState = Literal["ok", "cooling down", "paused"]


class _View(BaseModel):
    # the gateway always writes every field, so the description marks all of them required
    model_config = ConfigDict(frozen=True, extra="ignore",
                              json_schema_serialization_defaults_required=True)


class ListOf(_View, Generic[Item]):
    """OpenAI's list shape: `{"object": "list", "data": [...]}`."""

    object: Literal["list"] = "list"
    data: list[Item]


# --- sign-in and the gateway's identity ---------------------------------------------------

class ChallengeView(_View):
    wallet: str
    nonce: str
    message: str  # the Sign-In-With-Solana message the wallet signs
    expires_at: int


class SessionToken(_View):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: int
    account: str


class GatewayProof(_View):
    proof: str  # hex HMAC of the nonce and the port (see gateway/api/identity.py)


# --- account: credit and API keys ---------------------------------------------------------

class BalanceView(_View):
    account: str
    balance: int  # all that can be spent, free credit included
    free_credit: int  # the part of `balance` that is this week's free credit
    reserved: int
    total_spent: int
    currency: Literal["NEXUS"] = "NEXUS"
    decimals: int
    balance_display: str
    last_updated: int | None


class ApiKeyView(_View):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str  # the start of the secret, to tell keys apart
    created_at: int
    last_used_at: int | None
    revoked: bool
    revoked_at: int | None
    rpm: int | None  # the key's own limits; null: the gateway's
    tpm: int | None


class NewApiKey(ApiKeyView):
    key: str  # the secret, in this answer only


class ApiKeyList(ListOf[ApiKeyView]):
    pass


# --- money in: deposits, faucet, wallet ---------------------------------------------------

class DepositIntentView(_View):
    object: Literal["deposit.intent"] = "deposit.intent"
    id: str
    chain: str
    mint: str
    decimals: int
    token_program: str
    treasury: str  # the treasury's token account, the transfer's destination
    reference: str  # an extra read-only key of the transfer, naming this intent
    recent_blockhash: str
    memo: str
    amount: int
    amount_display: str
    expires_at: int


class DepositView(_View):
    object: Literal["deposit"] = "deposit"
    id: str
    reference: str
    amount: int
    amount_display: str
    memo: str
    status: DepositState
    signature: str | None
    created_at: int


class DepositResult(DepositView):
    """The answer to a deposit: 200 when credited, 202 while the chain has not confirmed."""

    already_credited: bool
    balance: int  # the account's credit after it
    balance_display: str


class DepositEntryView(DepositView):
    credited_at: int | None


class DepositList(ListOf[DepositEntryView]):
    pass


class FaucetView(_View):
    object: Literal["faucet"] = "faucet"
    wallet: str
    amount: int
    amount_display: str
    signature: str


class WalletView(_View):
    object: Literal["wallet"] = "wallet"
    address: str
    chain: str
    mint: str
    decimals: int
    token_account: str
    sol_lamports: int
    nexus: int
    nexus_display: str


# --- money out: worker earnings and payouts -----------------------------------------------

class PayoutView(_View):
    object: Literal["payout"] = "payout"
    id: str
    wallet: str
    amount: int
    amount_display: str
    status: PayoutState  # 200 when paid, 202 while sent and unconfirmed
    signature: str | None
    created_at: int


class TokenAccountView(_View):
    object: Literal["token_account"] = "token_account"
    wallet: str
    chain: str
    mint: str
    token_account: str
    exists: bool


class TokenAccountCheck(TokenAccountView):
    recent_blockhash: str  # to sign its creation with


class TokenAccountCreated(TokenAccountView):
    signature: str


class EarningsView(_View):
    object: Literal["worker"] = "worker"
    wallet: str
    earned: int
    paid: int
    paying: int  # in payouts not confirmed yet
    pending: int  # earned and not paid: what a claim pays
    earned_display: str
    paid_display: str
    paying_display: str
    pending_display: str
    claimable_from: int | None  # a new worker's earnings are held until then
    min_payout: int
    min_payout_display: str
    state: WorkerState  # benched ("cooling down", "paused") after failed jobs
    decimals: int
    payouts: list[PayoutView]  # the latest, newest first


class EarningsHour(_View):
    hour: int  # unix time of the hour's start (UTC)
    earned: int
    earned_display: str
    jobs: int  # jobs paid in that hour


class EarningsHistory(_View):
    """A worker wallet's earnings by hour: only the hours with any, oldest first."""

    object: Literal["list"] = "list"
    wallet: str
    since: int  # unix time: the first hour asked for
    decimals: int
    data: list[EarningsHour]


# --- the network --------------------------------------------------------------------------

class ModelPricing(_View):
    currency: Literal["NEXUS"] = "NEXUS"
    unit: Literal["base"] = "base"
    decimals: int
    per_request: int
    input_per_million: int
    output_per_million: int


class ModelView(_View):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    context_length: int
    workers: int
    quantization: str | None
    parameters: int | None
    pricing: ModelPricing


class ModelList(ListOf[ModelView]):
    pass


class ModelWorkers(_View):
    id: str
    workers: int


class NetworkStats(_View):
    workers_online: int
    accelerators: dict[str, int]  # workers by accelerator kind
    gpus: int
    slots_total: int
    slots_busy: int
    workers_benched: int
    queue_depth: int
    jobs_per_min: int
    tokens_per_s: float
    models: list[ModelWorkers]


# --- webhooks -----------------------------------------------------------------------------

class WebhookView(_View):
    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    balance_low_threshold: int | None
    balance_low_threshold_display: str | None
    created_at: int


class NewWebhook(WebhookView):
    secret: str  # signs the deliveries; in this answer only


class WebhookList(ListOf[WebhookView]):
    pass


class WebhookDeleted(_View):
    id: str
    object: Literal["webhook"] = "webhook"
    deleted: Literal[True] = True


class WebhookDeliveryView(_View):
    id: str
    object: Literal["webhook.delivery"] = "webhook.delivery"
    event_id: str
    event: str
    status: DeliveryState
    attempts: int
    last_status: str | None  # the last attempt's outcome class: 2xx, 4xx, timeout, ...
    last_error: str | None  # the gateway's words for it, never the receiver's answer
    created_at: int
    next_attempt_at: int | None


class WebhookDeliveryList(ListOf[WebhookDeliveryView]):
    pass

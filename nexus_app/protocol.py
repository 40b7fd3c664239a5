"""Worker <-> gateway frames over WebSocket: typed, versioned, one JSON object per text frame.

Handshake: gateway `challenge` -> worker `hello` (signed nonce) -> gateway `ready`.
Then the gateway sends `job`, `cancel`, `earnings`; the worker sends `chunk`, `done`, `error`
and `status`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
WORKER_PATH = "/v1/workers/connect"  # the gateway's WebSocket endpoint for workers
JobKind = Literal["chat", "completion", "embeddings"]
# why a job ended: the engine says stop, length or cancelled; the worker turns a stop after a
# tool call into tool_calls
FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]
MAX_EMBEDDING_INPUTS = 256  # texts in one embeddings job
MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI allows
MAX_CHUNK_LOGPROBS = 4096  # tokens whose log probabilities one chunk carries
MAX_MODEL_ID_LENGTH = 64
# A model id: a lowercase slug, as the worker derives from a GGUF file. It reaches webhook
# events, logs and /v1/models, so nothing else (spaces, newlines, markup) may pass.
MODEL_ID_RULE = (f"1-{MAX_MODEL_ID_LENGTH} characters among a-z, 0-9, '.', '_' and '-', "
                 "starting with a letter or digit")
_MODEL_ID = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_MODEL_ID_LENGTH - 1}}}")
MAX_NOTE_LENGTH = 300  # Hardware.note, a worker's human-readable remark
MAX_GPUS = 16  # GPUs one worker reports (one machine's)
# Models one worker serves at once: more than a GPU box holds in memory, and few enough that a
# connected worker costs the gateway under 100 KB (bench/idle_workers.py --hello max).
MAX_WORKER_MODELS = 16


def is_model_id(text: str) -> bool:
    """Whether `text` is a valid model id (see MODEL_ID_RULE)."""
    return _MODEL_ID.fullmatch(text) is not None


def _model_id(text: str) -> str:
    if not is_model_id(text):
        raise ValueError(f"a model id is {MODEL_ID_RULE}")
    return text


ModelId = Annotated[str, AfterValidator(_model_id)]


class ProtocolError(ValueError):
    """A frame that is not valid JSON or not a valid frame of this protocol."""


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelCard(BaseModel):
    """A model a worker serves."""

    model_config = ConfigDict(extra="ignore")

    id: ModelId
    file: str = Field("", max_length=255)
    parameters: int | None = Field(None, ge=0, le=10**15)
    quantization: str | None = Field(None, max_length=32)
    context_length: int = Field(2048, ge=1, le=2**31)
    embeddings: bool = False
    vision: bool = False


class GpuInfo(BaseModel):
    """One GPU as NVML reports it."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=96)  # NVML names fit in 96 bytes
    vram_total_mb: int = Field(0, ge=0, le=2**31)
    vram_free_mb: int = Field(0, ge=0, le=2**31)
    driver: str = Field("", max_length=80)  # as do its driver versions in 80
    utilization_pct: int | None = Field(None, ge=0, le=100)
    temperature_c: int | None = Field(None, ge=-300, le=1000)
    power_w: float | None = Field(None, ge=0, le=10**6)


class Hardware(BaseModel):
    """The worker's compute: GPUs from NVML, or a CPU-only record."""

    model_config = ConfigDict(extra="ignore")

    accelerator: Literal["cuda", "metal", "cpu"] = "cpu"
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=MAX_GPUS)
    cpu_threads: int = Field(1, ge=0, le=2**20)
    note: str = Field("", max_length=MAX_NOTE_LENGTH)


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0)  # of the prompt's, those the worker had in its cache


class Challenge(_Frame):
    type: Literal["challenge"] = "challenge"
    protocol: int = PROTOCOL_VERSION
    nonce: str


class Hello(_Frame):
    type: Literal["hello"] = "hello"
    protocol: int
    wallet: str = Field(min_length=32, max_length=44)
    signature: str = Field(min_length=64, max_length=90)
    models: list[ModelCard] = Field(min_length=1, max_length=MAX_WORKER_MODELS)
    hardware: Hardware = Field(default_factory=Hardware)
    slots: int = Field(1, ge=1, le=256)
    version: str = Field("", max_length=64)


class Ready(_Frame):
    type: Literal["ready"] = "ready"
    worker_id: str


class Job(_Frame):
    type: Literal["job"] = "job"
    job_id: str
    kind: JobKind
    model: str
    request: dict[str, Any]
    deadline: float


class Cancel(_Frame):
    type: Literal["cancel"] = "cancel"
    job_id: str


class Earnings(_Frame):
    type: Literal["earnings"] = "earnings"
    earned: int
    paid: int


class TopLogprob(BaseModel):
    """One token and its log probability (OpenAI's `top_logprobs` entry)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    token: str = Field(max_length=256)
    logprob: float = Field(le=0, allow_inf_nan=False)
    bytes: list[Annotated[int, Field(ge=0, le=255)]] = Field(max_length=128)


class TokenLogprob(TopLogprob):
    """A generated token's log probability and the most likely alternatives at its place."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list, max_length=MAX_TOP_LOGPROBS)


class Chunk(_Frame):
    """Output of a job; an empty one (no text, calls or log probabilities) says the worker
    started the job (its prompt is being read): a refusal can no longer come."""

    type: Literal["chunk"] = "chunk"
    job_id: str
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[TokenLogprob] | None = Field(None, max_length=MAX_CHUNK_LOGPROBS)


def has_output(chunk: Chunk) -> bool:
    """Whether a chunk carries output (and is not just the job's start)."""
    return bool(chunk.text or chunk.tool_calls or chunk.logprobs)


class Done(_Frame):
    type: Literal["done"] = "done"
    job_id: str
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    embeddings: list[list[float]] | None = None


class Error(_Frame):
    type: Literal["error"] = "error"
    job_id: str | None = None
    code: str = "worker_error"
    message: str = ""


class Status(_Frame):
    type: Literal["status"] = "status"
    active: int = Field(0, ge=0, le=256)
    slots: int = Field(1, ge=0, le=256)  # slots offered now: 0 while draining to stop
    hardware: Hardware | None = None
    tokens_per_s: float | None = Field(None, ge=0, le=10**9)


GatewayFrame = Annotated[Challenge | Ready | Job | Cancel | Earnings, Field(discriminator="type")]
WorkerFrame = Annotated[Hello | Chunk | Done | Error | Status, Field(discriminator="type")]

_gateway_frames: TypeAdapter[GatewayFrame] = TypeAdapter(GatewayFrame)
_worker_frames: TypeAdapter[WorkerFrame] = TypeAdapter(WorkerFrame)


def encode(frame: BaseModel) -> str:
    """Serialize a frame to the text of one WebSocket message."""
    return frame.model_dump_json(exclude_none=True)


def parse_worker_frame(text: str | bytes) -> Hello | Chunk | Done | Error | Status:
    """Parse a frame sent by a worker; raises ProtocolError with a short reason."""
    try:
        return _worker_frames.validate_json(text)
    except ValidationError as exc:
        raise ProtocolError(_reason(exc)) from None


def parse_gateway_frame(text: str | bytes) -> Challenge | Ready | Job | Cancel | Earnings:
    """Parse a frame sent by the gateway; raises ProtocolError with a short reason."""
    try:
        return _gateway_frames.validate_json(text)
    except ValidationError as exc:
        raise ProtocolError(_reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "frame"
    return f"invalid frame ({where}: {err['msg']})"[:120]


def worker_url(gateway_url: str) -> str:
    """The worker endpoint of a gateway given by its HTTP(S) URL."""
    base = gateway_url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            base = ws + base[len(http):]
    return base + WORKER_PATH


def worker_auth_message(nonce: str) -> bytes:
    """The bytes a worker signs with its payout wallet to answer a challenge."""
    return f"NEXUS worker authentication\nnonce: {nonce}".encode()

"""Request bodies of the OpenAI-compatible API (chat, completions, embeddings, responses),
validated with pydantic; the NEXUS routes' bodies are in `api/schemas.py`.

Unknown fields are ignored, as OpenAI clients send many; known fields of the wrong type or
out of range are a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from nexus_app.gateway.errors import REFUSAL, refusal
from nexus_app.protocol import MAX_TOP_LOGPROBS

TOKENS_MAX = 2**31 - 1  # the most tokens a request may ask for (a worker engine's int32)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _is_token_ids(value: Any) -> bool:
    """Whether `value` is a token array, or a list of them (`[1, 2]`, `[[1, 2]]`)."""
    def ints(items: Any) -> bool:
        return isinstance(items, list) and all(
            isinstance(item, int) and not isinstance(item, bool) for item in items)

    return isinstance(value, list) and bool(value) and (
        ints(value) or all(ints(item) for item in value))


def _refuse_token_ids(value: Any, field: str, advice: str) -> Any:
    """Token ids come from the client's tokenizer (OpenAI's), not the model's: refuse them
    with a 400 that says so instead of a type error."""
    if _is_token_ids(value):
        raise refusal("token_input_not_supported",
                      f"'{field}' holds token ids: ids from another tokenizer do not mean the "
                      f"same text to this network's models, so they are not accepted. {advice}")
    return value


class ContentPart(_Body):
    model_config = ConfigDict(extra="allow")

    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = Field(None, max_length=256)


class StreamOptions(_Body):
    include_usage: bool = False


class FunctionDefinition(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"] = "function"
    function: FunctionDefinition


def _tool_choice_kind(value: Any) -> str | None:
    """Which shape of `tool_choice` a value has: a mode string, or an object's `type`."""
    if isinstance(value, str):
        return "mode"
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# `tool_choice` is a mode, a function to call, or the tools allowed; validation errors name
# the shape the value has (not every shape it does not have)
TOOL_CHOICE_SHAPES = Discriminator(
    _tool_choice_kind, custom_error_type=REFUSAL + "invalid_tool_choice",
    custom_error_message="'tool_choice' must be 'none', 'auto', 'required', a function or "
                         "allowed_tools")
ToolMode = Annotated[Literal["none", "auto", "required"], Tag("mode")]


class FunctionName(_Body):
    name: str = Field(min_length=1, max_length=64)


class ChatFunctionChoice(_Body):
    """`tool_choice` forcing a call of one function."""

    type: Literal["function"]
    function: FunctionName


class ChatAllowedTools(_Body):
    mode: Literal["auto", "required"]
    tools: list[ChatFunctionChoice] = Field(min_length=1, max_length=128)


class ChatAllowedToolsChoice(_Body):
    """`tool_choice` restricting the model to some of `tools`: `auto` may call one of them
    (or none), `required` must call one of them."""

    type: Literal["allowed_tools"]
    allowed_tools: ChatAllowedTools


ChatToolChoice = Annotated[
    ToolMode | Annotated[ChatFunctionChoice, Tag("function")]
    | Annotated[ChatAllowedToolsChoice, Tag("allowed_tools")], TOOL_CHOICE_SHAPES]


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class SamplingParams(_Body):
    """Generation parameters shared by chat and legacy completions."""

    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=TOKENS_MAX)
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")
    user: str | None = Field(None, description="accepted for compatibility, never forwarded")

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters the caller set, for the worker."""
        names = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else self.stop[:4]


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=TOKENS_MAX)
    tools: list[Tool] | None = None
    tool_choice: ChatToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = Field(None, description="return each token's log probability")
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS,
        description="also the most likely alternatives at each token (needs logprobs)")

    @model_validator(mode="after")
    def _top_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("'top_logprobs' needs 'logprobs' set to true")
        return self

    def logprobs_asked(self) -> int | None:
        """The alternatives per token to return, or None when no log probabilities."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(SamplingParams):
    """Legacy completions: continue one text prompt."""

    prompt: str | list[str] = Field(
        description="the text to continue (one prompt); token ids are refused")
    max_tokens: int | None = Field(16, ge=1, le=TOKENS_MAX)
    echo: bool = Field(False, description="prepend the prompt to the text")
    suffix: str | None = Field(None, description="not supported")
    logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS,
        description="the log probabilities of each token and of this many alternatives")

    @field_validator("prompt", mode="before")
    @classmethod
    def _text_prompt(cls, value: Any) -> Any:
        return _refuse_token_ids(value, "prompt", "Send the prompt as text.")


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(
        description="a text, or up to 256 texts; token ids are refused")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="not supported: the model's own")
    user: str | None = Field(None, description="accepted for compatibility, never forwarded")

    @field_validator("input", mode="before")
    @classmethod
    def _text_input(cls, value: Any) -> Any:
        return _refuse_token_ids(value, "input", "Send the texts instead (with LangChain: "
                                 "OpenAIEmbeddings(check_embedding_ctx_length=False)).")


class ResponseFunctionTool(_Body):
    """A function the model may call (the Responses API's flat tool shape)."""

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFunctionChoice(_Body):
    """`tool_choice` forcing a call of one function."""

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64)


class ResponseAllowedToolsChoice(_Body):
    """`tool_choice` restricting the model to some of `tools` (see `ChatAllowedToolsChoice`)."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[ResponseFunctionChoice] = Field(min_length=1, max_length=128)


ResponseToolChoice = Annotated[
    ToolMode | Annotated[ResponseFunctionChoice, Tag("function")]
    | Annotated[ResponseAllowedToolsChoice, Tag("allowed_tools")], TOOL_CHOICE_SHAPES]


class ResponseTextFormat(_Body):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseText(_Body):
    format: ResponseTextFormat | None = None


ConversationId = Annotated[str, Field(min_length=1, max_length=256)]


class ConversationRef(_Body):
    """A conversation named by its id (the object form of `conversation`)."""

    id: str = Field(min_length=1, max_length=256)


class ResponsesRequest(_Body):
    """OpenAI Responses API: one model turn from an input (text or items)."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]] = Field(
        description="a text, or input items: messages (content as text or typed parts), "
                    "function_call and function_call_output")
    instructions: str | None = Field(None, description="a system message put first")
    max_output_tokens: int | None = Field(None, ge=1, le=TOKENS_MAX)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    tools: list[ResponseFunctionTool] | None = None
    tool_choice: ResponseToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: ResponseText | None = None
    metadata: dict[str, str] | None = Field(None, description="up to 16 pairs, echoed")
    previous_response_id: str | None = Field(
        None, max_length=256,
        description="a response stored with this key (`store: true`) to continue; a 400 "
                    "(previous_response_not_found) for any other")
    conversation: ConversationId | ConversationRef | None = Field(
        None, description="always a 400 (conversation_not_found): conversations are not "
                          "stored, send the earlier turns as input items")
    stream: bool = False
    store: bool | None = Field(None, description="true: keep the response, sealed under "
                               "this API key, until it expires or is deleted (default: not "
                               "kept)")
    user: str | None = Field(None, description="accepted for compatibility, never forwarded")

    @field_validator("input")
    @classmethod
    def _some_input(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if not value:
            raise ValueError("'input' must hold at least one item")
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and (len(value) > 16
                      or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("'metadata' holds at most 16 pairs (keys up to 64 characters, "
                             "values up to 512)")
        return value

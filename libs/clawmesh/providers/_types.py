"""Provider-neutral conversation and streaming types shared by every model provider.

The runner speaks only these; each provider translates them to its API (Anthropic Messages,
OpenAI Chat Completions, the offline echo model) and translates the stream back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

__all__ = [
    "AssistantMessage",
    "ChatMessage",
    "Credential",
    "CredentialKind",
    "Failover",
    "FailoverReason",
    "Image",
    "ModelRequest",
    "Provider",
    "ProviderError",
    "StreamEvent",
    "StreamStop",
    "TextDelta",
    "ToolCall",
    "ToolResultMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
]


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: dict[str, Any]


class Image(msgspec.Struct, frozen=True):
    """An image the user sent (the raw bytes; each provider encodes them its way)."""

    mime: str
    data: bytes


class UserMessage(msgspec.Struct, frozen=True, tag="user", tag_field="role"):
    text: str
    images: tuple[Image, ...] = ()


class AssistantMessage(msgspec.Struct, frozen=True, tag="assistant", tag_field="role"):
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


class ToolResultMessage(msgspec.Struct, frozen=True, tag="tool", tag_field="role"):
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False


ChatMessage = UserMessage | AssistantMessage | ToolResultMessage


class ToolSpec(msgspec.Struct, frozen=True):
    """A tool offered to the model: name, description and a JSON-Schema object for its input."""

    name: str
    description: str
    parameters: dict[str, Any]


class ModelRequest(msgspec.Struct, frozen=True):
    model: str  # the provider's model id, without the `provider/` prefix
    messages: tuple[ChatMessage, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 4096
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    # auto | none | required | the name of one tool; None: the provider's default (auto)
    tool_choice: str | None = None
    timeout: float = 120.0


# --- stream events -------------------------------------------------------------------------


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0


class StreamStop(msgspec.Struct, frozen=True):
    """End of one model response. `tool_calls` are complete (arguments parsed)."""

    stop_reason: str  # end_turn | tool_use | max_tokens | stop_sequence | refusal | …
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model_ref: str = ""  # `provider/model` that answered; set by `stream_with_failover`


StreamEvent = TextDelta | StreamStop


# --- errors --------------------------------------------------------------------------------

FailoverReason = Literal[
    "rate_limit",  # 429, quota, "resource exhausted"
    "overloaded",  # 529, overloaded_error (also mid-stream before any text), 503 saying overload
    "timeout",  # 408, 504, client timeouts, stream ended without any chunk
    "connection",  # refused, reset, DNS, TLS
    "server",  # any other 5xx
    "model_not_found",  # 404 for the model
    "auth",  # 401 / 403: try the next auth profile, never the next model
    "billing",  # 402, insufficient credits
    "bad_request",  # 400 / 413 / 422: a problem with the request itself; no failover
    "other",
]

_FAILS_OVER: frozenset[str] = frozenset(
    {"rate_limit", "overloaded", "timeout", "connection", "server", "model_not_found"}
)
_ROTATES_PROFILE: frozenset[str] = frozenset({"auth", "rate_limit", "billing"})


class ProviderError(Exception):
    """A classified provider failure. `fails_over`: try the next model; `rotates_profile`: try the
    next auth profile of the same provider first."""

    def __init__(
        self,
        reason: FailoverReason,
        message: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after

    @property
    def fails_over(self) -> bool:
        return self.reason in _FAILS_OVER

    @property
    def rotates_profile(self) -> bool:
        return self.reason in _ROTATES_PROFILE

    def __str__(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.provider}/{self.model}: {self.reason}{status}: {self.message}"


class Failover(msgspec.Struct, frozen=True):
    """Visible notice that one model of the chain failed before answering and the next one is tried.

    Yielded by `stream_with_failover` between models; the runner shows `str(event)` to the user
    (OpenClaw users asked for a visible "failed over to X" status rather than a silent switch).
    """

    from_ref: str  # `provider/model` that failed
    to_ref: str  # `provider/model` tried next
    reason: FailoverReason
    message: str

    def __str__(self) -> str:
        return f"failed over from {self.from_ref} to {self.to_ref}: {self.reason} ({self.message})"


CredentialKind = Literal["api_key", "token", "none"]


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential to try. Each provider decides how to send it: an `api_key` as the API's
    key, a `token` (an auth profile of type token) as a bearer token where the API tells the two
    apart (Anthropic), `none` as no key at all (echo, or a local OpenAI-compatible server
    without `apiKey`)."""

    profile_id: str  # `<provider>:<name>` from the file, `config:<provider>`, `env:<VAR>`, `none:<provider>`
    key: str | None = field(repr=False)  # never in logs
    kind: CredentialKind = "api_key"


class Provider(Protocol):
    """One model API. `stream` yields TextDelta… then exactly one StreamStop, or raises ProviderError."""

    name: str

    def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]: ...

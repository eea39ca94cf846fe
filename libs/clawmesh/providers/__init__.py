"""Model providers: Anthropic Messages, OpenAI Chat Completions (and compatible servers), echo.

The runner calls `stream_with_failover` once per model call of its tool loop:

    from clawmesh.providers import AuthProfiles, Failover, StreamStop, TextDelta, stream_with_failover

    auth = AuthProfiles.for_agent(agent)          # keep one per agent: it holds the cooldowns
    async for event in stream_with_failover(agent.models, history, config=config, auth=auth,
                                            system=prompt, tools=specs):
        ...                                       # TextDelta | Failover | StreamStop (last)

Lower level: `resolve_target(config, "anthropic/claude-x")` → `ModelTarget`, `provider_for(target)`
→ a `Provider` whose `stream(request, credential)` yields `TextDelta`s and one `StreamStop`; each
provider decides how to send a `Credential` (Anthropic sends a `token` as a bearer token).
"""

from ._auth import AUTH_PROFILES_FILENAME, AuthProfiles, cooldown_seconds
from ._echo import EchoProvider
from ._errors import classify_error
from ._failover import AllModelsFailed, Attempt, stream_with_failover
from ._registry import (
    BUILTIN_PROVIDERS,
    DEFAULT_PROVIDER,
    ModelTarget,
    aclose_providers,
    parse_model_ref,
    preload_sdks,
    provider_for,
    resolve_target,
)
from ._types import (
    AssistantMessage,
    ChatMessage,
    Credential,
    CredentialKind,
    Failover,
    FailoverReason,
    Image,
    ModelRequest,
    Provider,
    ProviderError,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = [
    "AUTH_PROFILES_FILENAME",
    "BUILTIN_PROVIDERS",
    "DEFAULT_PROVIDER",
    "AllModelsFailed",
    "AnthropicProvider",
    "AssistantMessage",
    "Attempt",
    "AuthProfiles",
    "ChatMessage",
    "Credential",
    "CredentialKind",
    "EchoProvider",
    "Failover",
    "FailoverReason",
    "Image",
    "ModelRequest",
    "ModelTarget",
    "OpenAIProvider",
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
    "aclose_providers",
    "classify_error",
    "cooldown_seconds",
    "parse_model_ref",
    "preload_sdks",
    "provider_for",
    "resolve_target",
    "stream_with_failover",
]


def __getattr__(name: str) -> object:
    # The provider classes are loaded on first use only: an echo-only runner never needs them.
    if name == "AnthropicProvider":
        from ._anthropic import AnthropicProvider

        return AnthropicProvider
    if name == "OpenAIProvider":
        from ._openai import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

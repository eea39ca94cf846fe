"""Model references (`provider/model`) → where and how to call them, and the provider instances.

Built-in providers: `anthropic`, `openai`, `echo`. Every `models.providers.<id>` entry of the
config defines a custom provider (an OpenAI-compatible server unless `api` says
`anthropic-messages`) or overrides the base URL, key and headers of a built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from ..config import Config, ConfigError, ModelProvider, secret_value

if TYPE_CHECKING:
    from ._anthropic import AnthropicProvider
    from ._openai import OpenAIProvider

from ._defaults import DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_OPENAI_BASE_URL, MaxTokensField
from ._echo import EchoProvider
from ._types import Provider, ProviderError

__all__ = [
    "BUILTIN_PROVIDERS",
    "DEFAULT_PROVIDER",
    "Api",
    "ModelTarget",
    "aclose_providers",
    "parse_model_ref",
    "preload_sdks",
    "provider_for",
    "resolve_target",
]

Api = Literal["anthropic", "openai", "echo"]

# OpenClaw's DEFAULT_PROVIDER: a model id without `provider/` is an OpenAI model.
DEFAULT_PROVIDER: Final = "openai"
BUILTIN_PROVIDERS: Final[tuple[str, ...]] = ("anthropic", "openai", "echo")
_BUILTIN_API: Final[dict[str, Api]] = {"anthropic": "anthropic", "openai": "openai", "echo": "echo"}
_DEFAULT_BASE_URL: Final = {"anthropic": DEFAULT_ANTHROPIC_BASE_URL, "openai": DEFAULT_OPENAI_BASE_URL}
# Read from `config.env` (not os.environ) so that tests and reloads decide what is set.
ENV_BASE_URL: Final = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}
ENV_API_KEY: Final = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One model of a chain, resolved against the config: everything needed to call it."""

    ref: str  # normalised `provider/model`
    provider_id: str  # `anthropic`, `openai`, `echo` or a `models.providers` key
    model: str  # the provider's model id (may itself contain `/`, e.g. OpenRouter ids)
    api: Api
    base_url: str | None  # None for echo
    headers: tuple[tuple[str, str], ...] = ()  # sorted pairs: hashable, usable as a cache key
    timeout: float | None = None  # `timeoutSeconds` of the provider entry, if set
    # Secrets stay out of repr() so that targets can be logged.
    config_api_key: str | None = field(default=None, repr=False)
    env_api_key: str | None = field(default=None, repr=False)  # ANTHROPIC_/OPENAI_API_KEY, built-ins only

    @property
    def headers_dict(self) -> dict[str, str]:
        return dict(self.headers)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """`"anthropic/claude-x"` → `("anthropic", "claude-x")`; `"gpt-x"` → `("openai", "gpt-x")`.

    Splits at the first `/` only (`openrouter/anthropic/claude` has model `anthropic/claude`).
    Provider ids compare case-insensitively, model ids are kept as written.
    """
    text = ref.strip()
    provider, slash, model = text.partition("/")
    if not slash:
        provider, model = DEFAULT_PROVIDER, text
    provider, model = provider.strip().lower(), model.strip()
    if not provider or not model:
        raise ProviderError(
            "model_not_found",
            f"invalid model reference {ref!r}: expected 'provider/model'",
            provider=provider or "?",
            model=model or ref,
        )
    return provider, model


def _custom_entry(config: Config, provider_id: str) -> ModelProvider | None:
    providers = config.document.models.providers if config.document.models else {}
    if provider_id in providers:
        return providers[provider_id]
    for key, entry in providers.items():
        if key.strip().lower() == provider_id:
            return entry
    return None


def _known_providers(config: Config) -> list[str]:
    custom = config.document.models.providers if config.document.models else {}
    return sorted({*BUILTIN_PROVIDERS, *(k.strip().lower() for k in custom)})


def _api_key(config: Config, entry: ModelProvider | None, provider_id: str, model: str) -> str | None:
    """The provider entry's `apiKey`; one that names an unset variable fails this model (as a
    401 would: the next auth profile or model is tried), naming the variable and the key."""
    if entry is None:
        return None
    try:
        return secret_value(entry.api_key, config.env, f"$.models.providers.{provider_id}.apiKey") or None
    except ConfigError as exc:
        raise ProviderError("auth", str(exc.problems[0]), provider=provider_id, model=model) from None


def resolve_target(config: Config, ref: str) -> ModelTarget:
    """Resolve `ref` against `config`; unknown providers raise `ProviderError("model_not_found")`."""
    provider_id, model = parse_model_ref(ref)
    normalised = f"{provider_id}/{model}"
    if provider_id == "echo":
        return ModelTarget(normalised, "echo", model, "echo", None)
    entry = _custom_entry(config, provider_id)
    builtin = provider_id in _BUILTIN_API
    if entry is None and not builtin:
        raise ProviderError(
            "model_not_found",
            f"unknown provider '{provider_id}' in model '{ref}'; supported: "
            f"{', '.join(_known_providers(config))} (add others under models.providers)",
            provider=provider_id,
            model=model,
        )
    api: Api
    if entry is not None and entry.api:
        api = "anthropic" if entry.api == "anthropic-messages" else "openai"
    else:
        api = _BUILTIN_API.get(provider_id, "openai")
    base_url = entry.base_url.strip() if entry is not None and entry.base_url else None
    if base_url is None and builtin:
        base_url = config.env.get(ENV_BASE_URL[provider_id]) or _DEFAULT_BASE_URL[provider_id]
    if not base_url:
        raise ProviderError(
            "model_not_found",
            f"models.providers.{provider_id} has no baseUrl",
            provider=provider_id,
            model=model,
        )
    return ModelTarget(
        normalised,
        provider_id,
        model,
        api,
        base_url,
        headers=tuple(sorted((entry.headers if entry else {}).items())),
        timeout=entry.timeout_seconds if entry else None,
        config_api_key=_api_key(config, entry, provider_id, model),
        env_api_key=(config.env.get(ENV_API_KEY[provider_id]) or None) if builtin else None,
    )


# --- provider instances ----------------------------------------------------------------------

_ECHO: Final = EchoProvider()
_ProviderKey = tuple[str, str, str, tuple[tuple[str, str], ...], float | None]
_providers: dict[_ProviderKey, AnthropicProvider | OpenAIProvider] = {}  # imported lazily: see provider_for


def _max_tokens_field(base_url: str) -> MaxTokensField:
    # api.openai.com's reasoning models reject `max_tokens`; many compatible servers only know it.
    return "max_completion_tokens" if urlsplit(base_url).hostname == "api.openai.com" else "max_tokens"


def provider_for(target: ModelTarget) -> Provider:
    """The provider for `target`, cached per endpoint so that a busy runner reuses connections.

    Credentials are chosen at call time: see `Provider.stream(request, credential)`.
    """
    if target.api == "echo" or target.base_url is None:
        return _ECHO
    key: _ProviderKey = (target.api, target.provider_id, target.base_url, target.headers, target.timeout)
    provider = _providers.get(key)
    if provider is None:
        timeout = target.timeout or 120.0
        if target.api == "anthropic":
            from ._anthropic import AnthropicProvider

            provider = AnthropicProvider(
                target.provider_id, base_url=target.base_url, headers=target.headers_dict, timeout=timeout
            )
        else:
            from ._openai import OpenAIProvider

            provider = OpenAIProvider(
                target.provider_id,
                base_url=target.base_url,
                headers=target.headers_dict,
                timeout=timeout,
                max_tokens_field=_max_tokens_field(target.base_url),
            )
        _providers[key] = provider
    return provider


def preload_sdks(config: Config) -> tuple[Api, ...]:
    """Import the provider modules the configured model chains will call, and return their APIs.

    They are imported lazily so that start-up stays fast, but a first import inside the first
    turn would stall the event loop there (with the SDKs it took seconds, long enough for a
    session lease to lapse). Runners call this in a worker thread at start. (The name is kept
    from when the providers were SDK clients.)
    """
    apis: set[Api] = set()
    for agent in config.agents:
        for ref in agent.models:
            try:
                apis.add(resolve_target(config, ref).api)
            except ProviderError:
                continue  # reported when the turn runs
    if "anthropic" in apis:
        from . import _anthropic  # noqa: F401
    if "openai" in apis:
        from . import _openai  # noqa: F401
    return tuple(sorted(apis - {"echo"}))


async def aclose_providers() -> None:
    """Close the cached providers' connections on the running loop (call at service shutdown).
    They leave the cache: a service started again in this process gets new ones, not closed
    ones (every call on those would fail)."""
    while _providers:
        _, provider = _providers.popitem()
        await provider.aclose()

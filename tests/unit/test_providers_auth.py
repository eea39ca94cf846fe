"""Auth profiles (auth-profiles.json, cooldowns) and the model registry (refs, targets, caching)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.providers import (
    AnthropicProvider,
    AuthProfiles,
    Credential,
    ModelTarget,
    OpenAIProvider,
    ProviderError,
    cooldown_seconds,
    parse_model_ref,
    provider_for,
    resolve_target,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def config(
    providers: dict[str, Any] | None = None, env: dict[str, str] | None = None, **extra: Any
) -> Config:
    data: dict[str, Any] = {"models": {"providers": providers or {}}, **extra}
    return parse_config(data, env=env or {}, checks=default_checks())


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def ids(credentials: list[Credential]) -> list[str]:
    return [c.profile_id for c in credentials]


PROFILES = {
    "anthropic:work": {"type": "api_key", "provider": "anthropic", "key": "k-work"},
    "openai:main": {"type": "api_key", "provider": "openai", "key": "k-oai"},
    "anthropic:home": {"type": "token", "provider": "anthropic", "token": "t-home"},
    "anthropic:spare": {"type": "api_key", "key": "k-spare"},  # provider from the id prefix
}


# -- auth-profiles.json ------------------------------------------------------------------------


def test_file_order_then_config_key_then_env(tmp_path: Path) -> None:
    path = write(tmp_path / "auth-profiles.json", {"version": 1, "profiles": PROFILES})
    cfg = config({"anthropic": {"apiKey": "k-config"}}, env={"ANTHROPIC_API_KEY": "k-env"})
    got = AuthProfiles(path).candidates("anthropic", resolve_target(cfg, "anthropic/c"))
    assert ids(got) == [
        "anthropic:work",
        "anthropic:home",
        "anthropic:spare",
        "config:anthropic",
        "env:ANTHROPIC_API_KEY",
    ]
    assert [(c.kind, c.key) for c in got] == [
        ("api_key", "k-work"),
        ("token", "t-home"),
        ("api_key", "k-spare"),
        ("api_key", "k-config"),
        ("api_key", "k-env"),
    ]


def test_explicit_order_comes_first(tmp_path: Path) -> None:
    order = {"anthropic": ["anthropic:spare", "anthropic:unknown", "anthropic:work"]}
    path = write(tmp_path / "p.json", {"version": 1, "profiles": PROFILES, "order": order})
    assert ids(AuthProfiles(path).candidates("anthropic")) == [
        "anthropic:spare",
        "anthropic:work",
        "anthropic:home",
    ]


def test_env_fallback_without_a_file(tmp_path: Path) -> None:
    cfg = config(env={"OPENAI_API_KEY": "k-env", "ANTHROPIC_API_KEY": "k-ant"})
    got = AuthProfiles(tmp_path / "missing.json").candidates("openai", resolve_target(cfg, "openai/g"))
    assert [(c.profile_id, c.key) for c in got] == [("env:OPENAI_API_KEY", "k-env")]
    assert AuthProfiles(None).candidates("openai", resolve_target(config(), "openai/g")) == []


def test_env_is_read_from_the_config_not_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-process")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://process.invalid/v1")
    target = resolve_target(config(env={}), "openai/g")
    assert target.env_api_key is None and target.base_url == "https://api.openai.com/v1"


def test_same_secret_twice_is_tried_once() -> None:
    cfg = config({"openai": {"apiKey": "${OPENAI_API_KEY}"}}, env={"OPENAI_API_KEY": "same"})
    assert ids(AuthProfiles(None).candidates("openai", resolve_target(cfg, "openai/g"))) == ["config:openai"]


def test_custom_provider_without_key_is_keyless_and_echo_needs_none() -> None:
    cfg = config({"local": {"baseUrl": "http://127.0.0.1:11434/v1"}})
    got = AuthProfiles(None).candidates("local", resolve_target(cfg, "local/llama"))
    assert [(c.profile_id, c.key, c.kind) for c in got] == [("none:local", None, "none")]
    assert [(c.key, c.kind) for c in AuthProfiles(None).candidates("echo")] == [(None, "none")]


def test_keys_stay_out_of_repr(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", {"profiles": PROFILES})
    cfg = config({"anthropic": {"apiKey": "k-config"}}, env={"ANTHROPIC_API_KEY": "k-env"})
    target = resolve_target(cfg, "anthropic/c")
    text = repr(AuthProfiles(path).candidates("anthropic", target)) + repr(target)
    assert "k-work" not in text and "k-config" not in text and "k-env" not in text and "t-home" not in text


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "Expected `object`, got `array` - at `$`"),
        ({"profiles": []}, "at `$.profiles`"),
        ({"profiles": {"anthropic:a": {"type": "api_key", "key": 5}}}, 'at `$.profiles["anthropic:a"].key`'),
        ({"profiles": {"anthropic:a": {"type": "api_key", "key": ""}}}, 'at `$.profiles["anthropic:a"].key`'),
        ({"profiles": {"anthropic:a": {"type": "token"}}}, "missing required field `token`"),
        (
            {"profiles": {"x": {"type": "magic", "key": "k"}}},
            "Invalid value 'magic' - at `$.profiles.x.type`",
        ),
        ({"profiles": {"nameless": {"type": "api_key", "key": "k"}}}, "has no provider"),
        ({"profiles": {}, "order": {"anthropic": "a"}}, "at `$.order.anthropic`"),
    ],
)
def test_broken_file_is_a_clear_auth_error(tmp_path: Path, document: object, where: str) -> None:
    path = write(tmp_path / "auth-profiles.json", document)
    with pytest.raises(ProviderError) as caught:
        AuthProfiles(path).candidates("anthropic", resolve_target(config(), "anthropic/c"))
    error = caught.value
    assert error.reason == "auth" and (error.provider, error.model) == ("anthropic", "c")
    assert str(path) in error.message and where in error.message, error.message


def test_oauth_profiles_and_unknown_keys_are_tolerated(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "profiles": {
            "anthropic:login": {"type": "oauth", "provider": "anthropic", "access": "a", "refresh": "r"},
            "anthropic:key": {"type": "api_key", "key": "k", "email": "me@example.com"},
        },
        "lastGood": {"anthropic": "anthropic:key"},  # OpenClaw keeps state in the same file
        "usageStats": {},
    }
    path = write(tmp_path / "p.json", document)
    assert ids(AuthProfiles(path).candidates("anthropic")) == ["anthropic:key"]


def test_file_changes_are_picked_up(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", {"profiles": {"openai:a": {"type": "api_key", "key": "k1"}}})
    auth = AuthProfiles(path)
    assert ids(auth.candidates("openai")) == ["openai:a"]
    write(path, {"profiles": {"openai:b": {"type": "api_key", "key": "k22"}}})
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    assert ids(auth.candidates("openai")) == ["openai:b"]
    path.unlink()
    assert auth.candidates("openai") == []


def test_for_agent_uses_the_agent_dir(tmp_path: Path) -> None:
    cfg = config(agents={"list": [{"id": "ops", "agentDir": str(tmp_path / "ops")}]})
    auth = AuthProfiles.for_agent(cfg.agents[0])
    assert auth.path == tmp_path / "ops" / "auth-profiles.json"


# -- cooldowns ---------------------------------------------------------------------------------


def test_cooldown_schedule() -> None:
    assert [cooldown_seconds(n, "rate_limit") for n in range(1, 6)] == [60, 300, 1500, 3600, 3600]
    assert [cooldown_seconds(n, "billing") for n in range(1, 5)] == [
        5 * 3600,
        10 * 3600,
        20 * 3600,
        24 * 3600,
    ]


def test_cooldown_escalates_moves_profiles_last_and_clears_on_success(tmp_path: Path) -> None:
    profiles = {f"openai:{n}": {"type": "api_key", "key": f"k-{n}"} for n in "abc"}
    clock = Clock()
    auth = AuthProfiles(write(tmp_path / "p.json", {"profiles": profiles}), clock=clock)
    assert auth.mark_failure("openai:a", "rate_limit") == 60
    assert auth.mark_failure("openai:b", "billing") == 5 * 3600
    assert ids(auth.candidates("openai")) == ["openai:c", "openai:a", "openai:b"]  # soonest-free first
    clock.now += 61
    assert ids(auth.candidates("openai")) == ["openai:a", "openai:c", "openai:b"]
    assert auth.mark_failure("openai:a", "auth") == 300  # second failure in a row
    auth.mark_success("openai:a")
    assert auth.cooldown_remaining("openai:a") == 0
    assert auth.mark_failure("openai:a", "rate_limit") == 60  # the count starts over


# -- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("anthropic/claude-x", ("anthropic", "claude-x")),
        ("gpt-5.4", ("openai", "gpt-5.4")),  # OpenClaw's DEFAULT_PROVIDER
        (" OpenAI/gpt-x ", ("openai", "gpt-x")),
        ("openrouter/anthropic/claude", ("openrouter", "anthropic/claude")),
        ("ollama/llama3.2:3b", ("ollama", "llama3.2:3b")),
    ],
)
def test_parse_model_ref(ref: str, expected: tuple[str, str]) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "anthropic/", "/model"])
def test_parse_model_ref_rejects_incomplete_refs(ref: str) -> None:
    with pytest.raises(ProviderError) as caught:
        parse_model_ref(ref)
    assert caught.value.reason == "model_not_found"


def test_custom_provider_api_selects_the_protocol() -> None:
    cfg = config(
        {
            "proxy": {
                "baseUrl": "http://proxy:8080",
                "api": "anthropic-messages",
                "apiKey": "pk",
                "timeoutSeconds": 9,
            },
            "vllm": {"baseUrl": "http://vllm:8000/v1", "api": "openai-completions", "headers": {"x-a": "1"}},
            "lmstudio": {"baseUrl": "http://lm:1234/v1"},
        }
    )
    proxy = resolve_target(cfg, "proxy/claude-q")
    assert (proxy.api, proxy.provider_id, proxy.model, proxy.base_url) == (
        "anthropic",
        "proxy",
        "claude-q",
        "http://proxy:8080",
    )
    assert (proxy.config_api_key, proxy.timeout, proxy.env_api_key) == ("pk", 9, None)
    vllm = resolve_target(cfg, "vllm/qwen")
    assert (vllm.api, vllm.headers_dict) == ("openai", {"x-a": "1"})
    assert resolve_target(cfg, "lmstudio/m").api == "openai"  # no `api`: OpenAI-compatible
    assert isinstance(provider_for(proxy), AnthropicProvider) and isinstance(
        provider_for(vllm), OpenAIProvider
    )


def test_builtin_base_urls_from_config_env_or_default() -> None:
    env = {"ANTHROPIC_BASE_URL": "http://ant.local", "ANTHROPIC_API_KEY": "e"}
    assert resolve_target(config(env=env), "anthropic/c").base_url == "http://ant.local"
    assert resolve_target(config(), "anthropic/c").base_url == "https://api.anthropic.com"
    overridden = config({"anthropic": {"baseUrl": "http://mine"}}, env=env)
    target = resolve_target(overridden, "anthropic/c")
    assert (target.base_url, target.api, target.env_api_key) == ("http://mine", "anthropic", "e")


def test_unknown_provider_lists_what_is_supported() -> None:
    cfg = config({"ollama": {"baseUrl": "http://o/v1"}})
    with pytest.raises(ProviderError) as caught:
        resolve_target(cfg, "mistral/large")
    error = caught.value
    assert (error.reason, error.provider, error.model) == ("model_not_found", "mistral", "large")
    assert "unknown provider 'mistral'" in error.message
    assert "anthropic, echo, ollama, openai" in error.message


def test_custom_provider_needs_a_base_url() -> None:
    with pytest.raises(ProviderError, match=r"models\.providers\.nobase has no baseUrl"):
        resolve_target(config({"nobase": {"apiKey": "k"}}), "nobase/m")


def test_providers_are_cached_per_endpoint() -> None:
    cfg = config({"ollama": {"baseUrl": "http://o/v1"}, "other": {"baseUrl": "http://elsewhere/v1"}})
    first = provider_for(resolve_target(cfg, "ollama/a"))
    assert provider_for(resolve_target(cfg, "ollama/a")) is first
    assert provider_for(resolve_target(cfg, "ollama/b")) is first  # another model, same endpoint
    assert provider_for(resolve_target(config({"ollama": {"baseUrl": "http://o/v1"}}), "ollama/a")) is first
    assert provider_for(resolve_target(cfg, "other/a")) is not first
    with_headers = config({"ollama": {"baseUrl": "http://o/v1", "headers": {"x": "1"}}})
    assert provider_for(resolve_target(with_headers, "ollama/a")) is not first


async def test_one_http_client_per_loop_serves_every_credential() -> None:
    provider = provider_for(resolve_target(config({"x": {"baseUrl": "http://x/v1"}}), "x/m"))
    assert isinstance(provider, OpenAIProvider)
    pool = provider._pool
    one = pool.get()
    assert pool.get() is one  # credentials are per-request headers: one connection pool for every key
    await provider.aclose()
    assert pool.get() is not one  # closed with the provider; the next call opens a new one
    await provider.aclose()


def test_model_target_is_hashable_and_frozen() -> None:
    target = resolve_target(config({"p": {"baseUrl": "http://p", "headers": {"b": "2", "a": "1"}}}), "p/m")
    assert isinstance(target, ModelTarget) and hash(target) == hash(
        resolve_target(config({"p": {"baseUrl": "http://p", "headers": {"a": "1", "b": "2"}}}), "p/m")
    )
    with pytest.raises(AttributeError):
        target.model = "other"  # type: ignore[misc]

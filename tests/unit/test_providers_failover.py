"""`stream_with_failover`: model chain and auth-profile rotation (OpenClaw latest semantics)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tests.fakes.models as fm
from clawmesh.checks import default_checks
from clawmesh.config import Config, parse_config
from clawmesh.providers import (
    AllModelsFailed,
    AuthProfiles,
    Failover,
    ProviderError,
    StreamStop,
    TextDelta,
    UserMessage,
    aclose_providers,
    stream_with_failover,
)

CLAUDE, GPT, GPT2 = "anthropic/claude-a", "openai/gpt-b", "openai/gpt-c"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[fm.FakeModelServer]:
    async with fm.FakeModelServer(chunks=3, reply="fallback answer") as server:
        yield server
        await aclose_providers()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def config_for(
    fake: fm.FakeModelServer, env: dict[str, str] | None = None, **providers: dict[str, Any]
) -> Config:
    entries: dict[str, Any] = {
        "anthropic": {"baseUrl": fake.base_url},
        "openai": {"baseUrl": fake.base_url + "/v1"},
    }
    for name, entry in providers.items():
        entries[name] = {**entries.get(name, {}), **entry}
    default_env = {"ANTHROPIC_API_KEY": "env-ant", "OPENAI_API_KEY": "env-oai"}
    return parse_config(
        {"models": {"providers": entries}}, env=default_env if env is None else env, checks=default_checks()
    )


def write_profiles(path: Path, profiles: dict[str, Any], order: dict[str, list[str]] | None = None) -> Path:
    path.write_text(json.dumps({"version": 1, "profiles": profiles, **({"order": order} if order else {})}))
    return path


async def run(
    chain: Sequence[str], config: Config, auth: AuthProfiles, **kwargs: Any
) -> tuple[list[Failover], str, StreamStop]:
    failovers: list[Failover] = []
    text: list[str] = []
    stops: list[StreamStop] = []
    async for event in stream_with_failover(chain, [UserMessage("hi")], config=config, auth=auth, **kwargs):
        if isinstance(event, Failover):
            assert not text, "a failover after text is not allowed"
            failovers.append(event)
        elif isinstance(event, TextDelta):
            text.append(event.text)
        else:
            stops.append(event)
    assert len(stops) == 1
    return failovers, "".join(text), stops[0]


def models_called(fake: fm.FakeModelServer) -> list[str | None]:
    return [r.model for r in fake.requests]


# -- model chain -------------------------------------------------------------------------------


async def test_primary_overloaded_fails_over_with_a_visible_notice(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.HTTPError(529))
    events = [
        e
        async for e in stream_with_failover(
            [CLAUDE, GPT], [UserMessage("hi")], config=config_for(fake), auth=AuthProfiles(None)
        )
    ]
    assert isinstance(events[0], Failover)
    assert str(events[0]) == "failed over from anthropic/claude-a to openai/gpt-b: overloaded (Overloaded)"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "fallback answer"
    assert isinstance(events[-1], StreamStop) and events[-1].stop_reason == "end_turn"
    assert events[-1].model_ref == GPT  # which model answered, for transcripts and usage
    assert models_called(fake) == ["claude-a", "gpt-b"]


async def test_chain_of_three(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.StreamError())  # overloaded_error in a 200 stream, before any text
    fake.script("gpt-b", fm.HTTPError(503))
    failovers, text, stop = await run([CLAUDE, GPT, GPT2], config_for(fake), AuthProfiles(None))
    assert stop.model_ref == GPT2
    assert [(f.from_ref, f.to_ref, f.reason) for f in failovers] == [
        (CLAUDE, GPT, "overloaded"),
        (GPT, GPT2, "overloaded"),
    ]
    assert text == "fallback answer" and models_called(fake) == ["claude-a", "gpt-b", "gpt-c"]


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (fm.HTTPError(529), "overloaded"),
        (fm.HTTPError(503, message="Service Unavailable"), "server"),
        (fm.HTTPError(500), "server"),
        (fm.HTTPError(429, retry_after=30), "rate_limit"),
        (fm.HTTPError(402), "billing"),
        (fm.HTTPError(404), "model_not_found"),
        (fm.HTTPError(504), "timeout"),
        (fm.Hang(30), "timeout"),
        (fm.Disconnect(), "connection"),
        (fm.StreamError(), "overloaded"),
    ],
)
async def test_each_trigger_fails_over(fake: fm.FakeModelServer, step: fm.Step, reason: str) -> None:
    fake.script("claude-a", step)
    # A short timeout only where it is meant to trip: a slow CI machine must not fake a Hang.
    config = config_for(fake, anthropic={"timeoutSeconds": 0.5} if isinstance(step, fm.Hang) else {})
    failovers, text, _ = await run([CLAUDE, GPT], config, AuthProfiles(None))
    assert [(f.from_ref, f.to_ref, f.reason) for f in failovers] == [(CLAUDE, GPT, reason)]
    assert text == "fallback answer"


@pytest.mark.parametrize("step", [fm.HTTPError(400), fm.HTTPError(422), fm.HTTPError(409)])
async def test_bad_request_raises_without_failover(fake: fm.FakeModelServer, step: fm.Step) -> None:
    fake.script("claude-a", step)
    with pytest.raises(ProviderError) as caught:
        await run([CLAUDE, GPT], config_for(fake), AuthProfiles(None))
    assert caught.value.reason in ("bad_request", "other")
    assert not isinstance(caught.value, AllModelsFailed)
    assert models_called(fake) == ["claude-a"]


async def test_error_after_text_raises_without_failover(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.StreamError(after_chunks=1))
    events: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for event in stream_with_failover(
            [CLAUDE, GPT], [UserMessage("hi")], config=config_for(fake), auth=AuthProfiles(None)
        ):
            events.append(event)
    assert caught.value.reason == "overloaded"
    assert len(events) == 1 and isinstance(events[0], TextDelta)  # text went out, then the error
    assert models_called(fake) == ["claude-a"]


async def test_no_profile_rotation_after_text_either(fake: fm.FakeModelServer, tmp_path: Path) -> None:
    path = write_profiles(
        tmp_path / "p.json",
        {
            "anthropic:a": {"type": "api_key", "key": "key-a"},
            "anthropic:b": {"type": "api_key", "key": "key-b"},
        },
    )
    fake.script("claude-a", fm.StreamError("rate_limit_error", "slow down", after_chunks=2))
    with pytest.raises(ProviderError) as caught:
        await run([CLAUDE, GPT], config_for(fake), AuthProfiles(path))
    assert caught.value.reason == "rate_limit"
    assert [r.api_key for r in fake.requests] == ["key-a"]  # the answer was half out: no retry


async def test_everything_fails_lists_every_attempt(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.HTTPError(529))
    fake.script("gpt-b", fm.HTTPError(500))
    fake.script("gpt-c", fm.HTTPError(404))
    with pytest.raises(AllModelsFailed) as caught:
        await run([CLAUDE, GPT, GPT2], config_for(fake), AuthProfiles(None))
    error = caught.value
    assert [(a.ref, a.reason) for a in error.attempts] == [
        (CLAUDE, "overloaded"),
        (GPT, "server"),
        (GPT2, "model_not_found"),
    ]
    message = str(error)
    for line in ("anthropic/claude-a: overloaded", "openai/gpt-b: server", "openai/gpt-c: model_not_found"):
        assert line in message
    assert isinstance(error, ProviderError) and error.reason == "model_not_found"


async def test_unknown_provider_in_chain_fails_over(fake: fm.FakeModelServer) -> None:
    failovers, text, _ = await run(["nope/model", "echo/x"], config_for(fake), AuthProfiles(None))
    assert failovers[0].reason == "model_not_found" and "unknown provider 'nope'" in failovers[0].message
    assert text == "echo: hi"


async def test_single_model_failure_is_all_models_failed(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.HTTPError(529))
    with pytest.raises(AllModelsFailed, match=r"all 1 model\(s\) failed: anthropic/claude-a: overloaded"):
        await run([CLAUDE], config_for(fake), AuthProfiles(None))


async def test_each_call_starts_at_the_primary(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.HTTPError(529), fm.Text("primary is back"))
    config = config_for(fake)
    auth = AuthProfiles(None)
    await run([CLAUDE, GPT], config, auth)
    failovers, text, _ = await run([CLAUDE, GPT], config, auth)
    assert failovers == [] and text == "primary is back"


async def test_timeout_argument_overrides_config(fake: fm.FakeModelServer) -> None:
    fake.script("claude-a", fm.Hang(30))
    config = config_for(fake, anthropic={"timeoutSeconds": 60})
    failovers, text, _ = await run([CLAUDE, "echo/x"], config, AuthProfiles(None), timeout=0.3)
    assert failovers[0].reason == "timeout" and text == "echo: hi"


# -- auth profiles within a model --------------------------------------------------------------


async def test_rejected_profile_rotates_to_the_next_without_failover(
    fake: fm.FakeModelServer, tmp_path: Path, clock: Clock
) -> None:
    path = write_profiles(
        tmp_path / "auth-profiles.json",
        {
            "anthropic:a": {"type": "api_key", "provider": "anthropic", "key": "key-a"},
            "anthropic:b": {"type": "api_key", "provider": "anthropic", "key": "key-b"},
        },
    )
    fake.keys_rejected.add("key-a")
    auth = AuthProfiles(path, clock=clock)
    failovers, text, _ = await run([CLAUDE, GPT], config_for(fake), auth)
    assert failovers == [] and text == "fallback answer"
    assert [(r.model, r.api_key) for r in fake.requests] == [("claude-a", "key-a"), ("claude-a", "key-b")]
    assert auth.cooldown_remaining("anthropic:a") == 60 and auth.cooldown_remaining("anthropic:b") == 0


async def test_forbidden_profile_rotates_too(fake: fm.FakeModelServer, tmp_path: Path) -> None:
    path = write_profiles(tmp_path / "p.json", {"anthropic:a": {"type": "api_key", "key": "key-a"}})
    fake.keys_forbidden.add("key-a")
    failovers, _, _ = await run([CLAUDE, GPT], config_for(fake), AuthProfiles(path))
    assert failovers == []
    assert [r.api_key for r in fake.requests] == ["key-a", "env-ant"]  # then the env key


async def test_all_profiles_rejected_fails_over_to_the_next_model(
    fake: fm.FakeModelServer, tmp_path: Path
) -> None:
    path = write_profiles(
        tmp_path / "p.json",
        {
            "anthropic:a": {"type": "api_key", "key": "key-a"},
            "anthropic:b": {"type": "api_key", "key": "key-b"},
        },
    )
    fake.keys_rejected.update({"key-a", "key-b", "env-ant"})
    failovers, text, _ = await run([CLAUDE, GPT], config_for(fake), AuthProfiles(path))
    assert [(f.from_ref, f.to_ref, f.reason) for f in failovers] == [(CLAUDE, GPT, "auth")]
    assert [r.api_key for r in fake.requests] == ["key-a", "key-b", "env-ant", "env-oai"]
    assert text == "fallback answer"


async def test_rate_limited_profile_is_cooled_down_and_tried_last(
    fake: fm.FakeModelServer, tmp_path: Path, clock: Clock
) -> None:
    path = write_profiles(
        tmp_path / "p.json",
        {"openai:a": {"type": "api_key", "key": "key-a"}, "openai:b": {"type": "api_key", "key": "key-b"}},
    )
    auth = AuthProfiles(path, clock=clock)
    config = config_for(fake, env={})
    fake.script("gpt-b", fm.HTTPError(429, retry_after=20), key="key-a")
    failovers, _, _ = await run([GPT], config, auth)
    assert failovers == [] and [r.api_key for r in fake.requests] == ["key-a", "key-b"]
    assert auth.cooldown_remaining("openai:a") == 60

    fake.requests.clear()
    await run([GPT], config, auth)
    assert [r.api_key for r in fake.requests] == ["key-b"]  # a is cooling down: b first

    clock.now += 61  # cooldown over: file order again
    fake.requests.clear()
    await run([GPT], config, auth)
    assert [r.api_key for r in fake.requests] == ["key-a"]
    assert auth.cooldown_remaining("openai:a") == 0  # success cleared it


async def test_rate_limit_on_every_profile_moves_to_the_next_model(
    fake: fm.FakeModelServer, tmp_path: Path, clock: Clock
) -> None:
    path = write_profiles(tmp_path / "p.json", {"anthropic:a": {"type": "api_key", "key": "key-a"}})
    fake.script("claude-a", fm.HTTPError(429), fm.HTTPError(429))
    auth = AuthProfiles(path, clock=clock)
    failovers, _, _ = await run([CLAUDE, GPT], config_for(fake), auth)
    assert [f.reason for f in failovers] == ["rate_limit"]
    assert [r.api_key for r in fake.requests] == ["key-a", "env-ant", "env-oai"]
    assert auth.cooldown_remaining("anthropic:a") == 60
    assert auth.cooldown_remaining("env:ANTHROPIC_API_KEY") == 60


async def test_overload_does_not_rotate_profiles(fake: fm.FakeModelServer, tmp_path: Path) -> None:
    # An overloaded model is not the key's fault: straight to the next model, no cooldown.
    path = write_profiles(tmp_path / "p.json", {"anthropic:a": {"type": "api_key", "key": "key-a"}})
    fake.script("claude-a", fm.HTTPError(529))
    auth = AuthProfiles(path)
    await run([CLAUDE, GPT], config_for(fake), auth)
    assert [r.api_key for r in fake.requests] == ["key-a", "env-oai"]
    assert auth.cooldown_remaining("anthropic:a") == 0


async def test_missing_key_fails_over_with_a_hint(fake: fm.FakeModelServer) -> None:
    failovers, text, _ = await run([CLAUDE, "echo/x"], config_for(fake, env={}), AuthProfiles(None))
    assert failovers[0].reason == "auth"
    assert (
        "ANTHROPIC_API_KEY" in failovers[0].message
        and "models.providers.anthropic.apiKey" in failovers[0].message
    )
    assert text == "echo: hi" and fake.requests == []


async def test_broken_profiles_file_fails_over_instead_of_crashing(
    fake: fm.FakeModelServer, tmp_path: Path
) -> None:
    path = tmp_path / "auth-profiles.json"
    path.write_text('{"profiles": {"anthropic:a": {"type": "api_key", "key": 5}}}')
    failovers, text, _ = await run([CLAUDE, "echo/x"], config_for(fake), AuthProfiles(path))
    assert failovers[0].reason == "auth"
    assert str(path) in failovers[0].message and '$.profiles["anthropic:a"].key' in failovers[0].message
    assert text == "echo: hi"


async def test_custom_keyless_openai_compatible_provider(fake: fm.FakeModelServer) -> None:
    config = config_for(fake, ollama={"baseUrl": fake.base_url + "/v1", "api": "openai-completions"})
    _, text, _ = await run(["ollama/llama3.2:3b"], config, AuthProfiles(None))
    assert text == "fallback answer"
    sent = fake.requests[-1]
    assert (sent.api, sent.model, sent.api_key) == ("openai", "llama3.2:3b", "none")


async def test_custom_anthropic_messages_provider_uses_its_key(fake: fm.FakeModelServer) -> None:
    config = config_for(fake, proxy={"baseUrl": fake.base_url, "api": "anthropic-messages", "apiKey": "pk"})
    await run(["proxy/claude-x"], config, AuthProfiles(None))
    sent = fake.requests[-1]
    assert (sent.api, sent.model, sent.api_key) == ("anthropic", "claude-x", "pk")


async def test_echo_in_the_chain_needs_no_key(fake: fm.FakeModelServer) -> None:
    failovers, text, stop = await run(["echo/demo"], config_for(fake, env={}), AuthProfiles(None))
    assert failovers == [] and text == "echo: hi" and stop.stop_reason == "end_turn"

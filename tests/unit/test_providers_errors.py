"""Error classification: every failure of both APIs becomes a `ProviderError` with the right reason."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

import tests.fakes.models as fm
from clawmesh.checks import default_checks
from clawmesh.config import parse_config
from clawmesh.providers import (
    Credential,
    ModelRequest,
    ProviderError,
    TextDelta,
    UserMessage,
    aclose_providers,
    classify_error,
    provider_for,
    resolve_target,
)
from clawmesh.providers._errors import parse_retry_after


@pytest.fixture
async def fake() -> AsyncIterator[fm.FakeModelServer]:
    async with fm.FakeModelServer(chunks=3) as server:
        yield server
        await aclose_providers()


async def failure(
    fake: fm.FakeModelServer, ref: str, step: fm.Step | None
) -> tuple[ProviderError, list[str]]:
    """Script `step`, call `ref` once; the error and the text that streamed before it."""
    if step is not None:
        fake.script(step)
    config = parse_config(
        {
            "models": {
                "providers": {
                    "anthropic": {"baseUrl": fake.base_url},
                    "openai": {"baseUrl": fake.base_url + "/v1"},
                }
            }
        },
        env={},
        checks=default_checks(),
    )
    target = resolve_target(config, ref)
    # Short only where a Hang is meant to trip it: a slow CI machine must not fake a timeout.
    # A stall after the first chunk needs that chunk to arrive in time, so it gets longer.
    timeout = 30.0
    if isinstance(step, fm.Hang):
        timeout = 3.0 if step.after_chunks else 0.5
    request = ModelRequest(model=target.model, messages=(UserMessage("hi"),), timeout=timeout)
    text: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider_for(target).stream(request, Credential("test", "sk-test")):
            if isinstance(event, TextDelta):
                text.append(event.text)
    assert fake.pending == 0
    return caught.value, text


COMMON: list[tuple[fm.Step, str, int | None]] = [
    (fm.HTTPError(529), "overloaded", 529),
    (fm.HTTPError(500), "server", 500),
    (fm.HTTPError(502), "server", 502),
    (fm.HTTPError(503, message="Service Unavailable"), "server", 503),
    (fm.HTTPError(503, message="Model is at capacity, try later"), "overloaded", 503),
    (fm.HTTPError(429), "rate_limit", 429),
    (fm.HTTPError(404), "model_not_found", 404),
    (fm.HTTPError(401), "auth", 401),
    (fm.HTTPError(403), "auth", 403),
    (fm.HTTPError(402), "billing", 402),
    (fm.HTTPError(400), "bad_request", 400),
    (fm.HTTPError(413), "bad_request", 413),
    (fm.HTTPError(422), "bad_request", 422),
    (fm.HTTPError(408), "timeout", 408),
    (fm.HTTPError(504), "timeout", 504),
    (fm.HTTPError(409), "other", 409),
    (fm.StreamError(), "overloaded", None),  # overloaded_error inside a 200 stream, before any text
    (fm.StreamError("rate_limit_error", "slow down"), "rate_limit", None),
    (fm.Hang(30), "timeout", None),  # before the response headers
    (fm.Hang(30, after_chunks=1), "timeout", None),  # the stream stalls
    (fm.Disconnect(), "connection", None),
    (fm.Disconnect(after_chunks=1), "connection", None),
]
ANTHROPIC_ONLY: list[tuple[fm.Step, str, int | None]] = [
    (fm.HTTPError(503), "server", 503),  # Anthropic's plain 503: "Internal server error"
    (fm.HTTPError(429, "overloaded_error", "Overloaded"), "overloaded", 429),  # classify by type
    (fm.HTTPError(400, message="Your credit balance is too low to access the API."), "billing", 400),
    (fm.StreamError("api_error", "Internal server error"), "server", None),
]
OPENAI_ONLY: list[tuple[fm.Step, str, int | None]] = [
    (fm.HTTPError(503), "overloaded", 503),  # OpenAI's 503: "The engine is currently overloaded"
    (
        fm.HTTPError(429, "insufficient_quota", "You exceeded your quota", code="insufficient_quota"),
        "billing",
        429,
    ),
    (fm.StreamError("server_error", "The server had an error"), "server", None),  # plain openai.APIError
]


def _cases(ref: str, cases: list[tuple[fm.Step, str, int | None]]) -> list[Any]:
    return [
        pytest.param(ref, step, reason, status, id=f"{ref.split('/')[0]}-{step}")
        for step, reason, status in cases
    ]


@pytest.mark.parametrize(
    ("ref", "step", "reason", "status"),
    _cases("anthropic/claude-t", COMMON + ANTHROPIC_ONLY) + _cases("openai/gpt-t", COMMON + OPENAI_ONLY),
)
async def test_classification(
    fake: fm.FakeModelServer, ref: str, step: fm.Step, reason: str, status: int | None
) -> None:
    error, text = await failure(fake, ref, step)
    assert (error.reason, error.status) == (reason, status), error
    provider, model = ref.split("/")
    assert (error.provider, error.model) == (provider, model)
    assert error.message and f"{provider}/{model}: {reason}" in str(error)
    interrupted = getattr(step, "after_chunks", None)
    assert bool(text) == bool(interrupted)  # failed before any text unless scripted otherwise


@pytest.mark.parametrize("ref", ["anthropic/claude-t", "openai/gpt-t"])
async def test_rate_limit_carries_retry_after(fake: fm.FakeModelServer, ref: str) -> None:
    error, _ = await failure(fake, ref, fm.HTTPError(429, retry_after=7))
    assert (error.reason, error.retry_after) == ("rate_limit", 7.0)
    error, _ = await failure(fake, ref, fm.HTTPError(429, headers={"retry-after-ms": "1500"}))
    assert error.retry_after == 1.5
    error, _ = await failure(fake, ref, fm.HTTPError(529))
    assert error.retry_after is None


async def test_rejected_key_is_auth(fake: fm.FakeModelServer) -> None:
    fake.keys_rejected.add("sk-test")
    error, _ = await failure(fake, "anthropic/c", None)
    assert (error.reason, error.status) == ("auth", 401)
    assert error.rotates_profile and not error.fails_over


def test_reason_properties() -> None:
    def err(reason: Any) -> ProviderError:
        return ProviderError(reason, "x", provider="p", model="m")

    assert [
        r
        for r in ("overloaded", "timeout", "connection", "server", "model_not_found")
        if not err(r).fails_over
    ] == []
    assert err("rate_limit").fails_over and err("rate_limit").rotates_profile
    assert not err("bad_request").fails_over and not err("bad_request").rotates_profile
    assert not err("other").fails_over


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # ms wins
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == 30.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout"),
        (asyncio.TimeoutError(), "timeout"),  # noqa: UP041  (what asyncio.wait_for raises)
        (httpx.RemoteProtocolError("incomplete chunked read"), "connection"),
        (httpx.ConnectError("refused"), "connection"),
        (ConnectionResetError("reset by peer"), "connection"),
        (msgspec.DecodeError("JSON is malformed"), "server"),  # a garbled stream chunk
        (ValueError("surprise"), "other"),
    ],
)
def test_raw_exceptions(exc: BaseException, reason: str) -> None:
    error = classify_error(exc, provider="anthropic", model="c")
    assert (error.reason, error.provider, error.model) == (reason, "anthropic", "c")


def test_provider_errors_pass_through() -> None:
    original = ProviderError("auth", "no", provider="p", model="m")
    assert classify_error(original, provider="x", model="y") is original

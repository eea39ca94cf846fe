"""One model call with OpenClaw's two-stage failover: auth profiles within a model, then the chain.

    async for event in stream_with_failover(agent.models, history, config=config, auth=auth,
                                            system=prompt, tools=specs):
        match event:
            case TextDelta(text): ...          # stream to the user
            case Failover(): ...               # show str(event): "failed over from X to Y: …"
            case StreamStop(): ...             # run event.tool_calls, then call again

Rules (OpenClaw latest, backend-protocols.md §4):
- `auth` → the next credential of the same provider; only when all fail does the model fail.
- `rate_limit` / `billing` → cool the profile down, try the next credential, then the next model.
- `overloaded` / `timeout` / `connection` / `server` / `model_not_found` → the next model.
- `bad_request` / `other` → raise at once: the request itself is the problem.
- Only before any text was streamed: once a `TextDelta` went out, a failure raises.
No sleeps and no SDK retries: the chain is the retry, so a failing call is over quickly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from ..config import Config
from ._auth import AuthProfiles
from ._registry import ModelTarget, parse_model_ref, provider_for, resolve_target
from ._types import (
    ChatMessage,
    Failover,
    FailoverReason,
    ModelRequest,
    ProviderError,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolSpec,
)

__all__ = ["DEFAULT_TIMEOUT", "AllModelsFailed", "Attempt", "stream_with_failover"]

log = logging.getLogger("clawmesh.providers")

DEFAULT_TIMEOUT = 120.0
_NEXT_CREDENTIAL: frozenset[str] = frozenset({"auth", "rate_limit", "billing"})

T = TypeVar("T")


@contextlib.asynccontextmanager
async def _closing(events: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a provider's stream (and its HTTP response) even when our caller stops early."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model of the chain that failed (after trying all its credentials)."""

    ref: str
    reason: FailoverReason
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason} ({self.message})"


class AllModelsFailed(ProviderError):
    """Every model of the chain failed; `attempts` lists them in order. The reason, provider
    and model are those of the last attempt."""

    def __init__(self, attempts: Sequence[Attempt], last: ProviderError) -> None:
        self.attempts = tuple(attempts)
        listing = "; ".join(str(a) for a in self.attempts)
        super().__init__(
            last.reason,
            f"all {len(self.attempts)} model(s) failed: {listing}",
            provider=last.provider,
            model=last.model,
            status=last.status,
            retry_after=last.retry_after,
        )

    def __str__(self) -> str:
        return self.message


async def _try_model(
    target: ModelTarget, request: ModelRequest, auth: AuthProfiles
) -> AsyncIterator[StreamEvent]:
    """Stream from one model, rotating credentials. Raises the error that ends this model."""
    # A broken auth-profiles.json raises ProviderError("auth") here: this model fails over.
    credentials = auth.candidates(target.provider_id, target)
    if not credentials:
        raise ProviderError(
            "auth", auth.missing_key_hint(target), provider=target.provider_id, model=target.model
        )
    last: ProviderError | None = None
    for i, credential in enumerate(credentials):
        streamed_text = False
        try:
            async with _closing(provider_for(target).stream(request, credential)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        streamed_text = True
                    elif isinstance(event, StreamStop):
                        auth.mark_success(credential.profile_id)
                        event = msgspec.structs.replace(event, model_ref=target.ref)
                    yield event
            return
        except ProviderError as exc:
            if streamed_text or exc.reason not in _NEXT_CREDENTIAL:
                raise
            cooldown = auth.mark_failure(credential.profile_id, exc.reason)
            remaining = len(credentials) - i - 1
            log.warning(
                "%s: profile %s failed (%s: %s), cooling down %.0fs; %s",
                target.ref,
                credential.profile_id,
                exc.reason,
                exc.message,
                cooldown,
                f"trying the next of {remaining} profile(s)" if remaining else "no profile left",
            )
            last = exc
    assert last is not None
    raise last


async def stream_with_failover(
    chain: Sequence[str],
    messages: Sequence[ChatMessage],
    *,
    config: Config,
    auth: AuthProfiles,
    system: str = "",
    tools: Sequence[ToolSpec] = (),
    max_tokens: int = 4096,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> AsyncIterator[StreamEvent | Failover]:
    """One model call over `chain` (`AgentView.models`, primary first).

    Yields `Failover` notices (only before any text), then the answering model's `TextDelta`s
    and exactly one `StreamStop`. Raises `ProviderError` for a failure after text started or a
    request the API rejected (`bad_request`), and `AllModelsFailed` when the chain ran out.
    `timeout` (seconds without progress) defaults to the provider's `timeoutSeconds`, else 120.
    """
    refs = list(dict.fromkeys(_display(ref) for ref in chain if ref.strip()))  # a model once is enough
    if not refs:
        raise ProviderError("model_not_found", "no model configured", provider="?", model="?")
    attempts: list[Attempt] = []
    last: ProviderError | None = None
    for ref in refs:
        if last is not None:
            failover = Failover(attempts[-1].ref, ref, last.reason, last.message)
            log.warning("%s", failover)
            yield failover
        streamed_text = False
        try:
            target = resolve_target(config, ref)
            request = ModelRequest(
                model=target.model,
                messages=tuple(messages),
                system=system,
                tools=tuple(tools),
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=tuple(stop),
                tool_choice=tool_choice,
                timeout=timeout or target.timeout or DEFAULT_TIMEOUT,
            )
            async with _closing(_try_model(target, request, auth)) as events:
                async for event in events:
                    streamed_text = streamed_text or isinstance(event, TextDelta)
                    yield event
            return
        except ProviderError as exc:
            if streamed_text or not (exc.fails_over or exc.rotates_profile):
                raise
            last = exc
            attempts.append(Attempt(ref, exc.reason, exc.message))
    assert last is not None
    raise AllModelsFailed(attempts, last)


def _display(ref: str) -> str:
    """`provider/model` as resolution will spell it; the raw text if it does not parse."""
    try:
        provider, model = parse_model_ref(ref)
    except ProviderError:
        return ref.strip()
    return f"{provider}/{model}"

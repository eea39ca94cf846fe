"""Turn whatever a model call raised into a classified `ProviderError`, for both APIs.

One table for both APIs, so that failover treats "Anthropic is overloaded" and "OpenAI is
overloaded" alike. Classification follows OpenClaw's failover matchers (see
backend-protocols.md §4): status first, then the provider's error type/code, then the wording
for the cases where providers are known to disagree (503, billing sent as 400/429).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from typing import Final

import httpx
import msgspec

from ._types import FailoverReason, ProviderError

__all__ = ["classify_error", "parse_retry_after", "reason_for"]

# 503 means "overloaded" only when it says so (OpenClaw #28512): a plain 503 from a proxy is a
# server fault like any other 5xx. Both fail over, but the reason shown to the user differs.
_OVERLOAD_WORDS: Final = ("overload", "capacity", "high demand")
# Billing problems arrive as 400 (Anthropic "credit balance is too low") or 429 (OpenAI
# `insufficient_quota`); they need the 5-hour billing cooldown, not a bad-request error.
_BILLING_WORDS: Final = ("credit balance", "insufficient credit", "insufficient_quota", "billing", "quota")
_BILLING_CODES: Final = frozenset({"insufficient_quota", "billing_error", "billing_hard_limit_reached"})
# Error types that a stream may report in an `error` event / `{"error": …}` frame (HTTP 200).
_STREAM_TYPES: Final[Mapping[str, FailoverReason]] = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limit",
    "timeout_error": "timeout",
    "api_error": "server",
    "server_error": "server",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "billing",
    "not_found_error": "model_not_found",
    "invalid_request_error": "bad_request",
    "request_too_large": "bad_request",
}


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if any."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def reason_for(status: int | None, error_type: str | None, code: str | None, message: str) -> FailoverReason:
    """The failover reason for an HTTP status (None/200: an error reported inside a stream)."""
    if error_type == "overloaded_error" or status == 529:
        return "overloaded"  # also a 429 or a 200 stream carrying overloaded_error
    if code in _BILLING_CODES or error_type in _BILLING_CODES:
        return "billing"
    if status is None or status == 200:
        if error_type is not None and error_type in _STREAM_TYPES:
            return _STREAM_TYPES[error_type]
        if code == "rate_limit_exceeded":
            return "rate_limit"
        # A stream that breaks off with an unspecific error is the server's fault.
        return "overloaded" if _mentions(message, _OVERLOAD_WORDS) else "server"
    if status == 429:
        return "billing" if _mentions(message, ("insufficient_quota", "credit balance")) else "rate_limit"
    if status == 402:
        return "billing"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "model_not_found"
    if status in (408, 504):
        return "timeout"
    if status == 503:
        return "overloaded" if _mentions(message, _OVERLOAD_WORDS) else "server"
    if status >= 500:
        return "server"
    if status in (400, 413, 422):
        return "billing" if _mentions(message, _BILLING_WORDS) else "bad_request"
    return "other"


def classify_error(exc: BaseException, *, provider: str, model: str) -> ProviderError:
    """A `ProviderError` for anything a model call raised; unknown exceptions become `other`.

    HTTP error responses and error events are classified where they are read (`_http`); what
    reaches this are transport failures, malformed responses and surprises.
    """
    if isinstance(exc, ProviderError):
        return exc

    def error(reason: FailoverReason, message: str) -> ProviderError:
        return ProviderError(reason, message, provider=provider, model=model)

    # Order matters: httpx's timeouts subclass its transport errors.
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return error("timeout", f"timed out: {_describe(exc)}")
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return error("connection", f"connection error: {_describe(exc)}")
    if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError):
        return error("server", f"invalid response: {exc}")
    return error("other", _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

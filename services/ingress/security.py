"""Bearer-token auth with a failed-attempt limiter."""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request

from clawmesh.config import GatewayRateLimit
from clawmesh.gateway import is_loopback

__all__ = ["AuthGate"]


class AuthGate:
    """`Authorization: Bearer <token>`; repeated failures from one address are locked out
    (OpenClaw's rateLimit: 10 failures per 60 s → 429 + Retry-After for 300 s)."""

    def __init__(self, token: Callable[[], str | None], limits: Callable[[], GatewayRateLimit]) -> None:
        self._token = token
        self._limits = limits
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def check(self, request: Request) -> tuple[int, str, float | None] | None:
        """None when allowed, else (status, message, retry_after)."""
        expected = self._token()
        if expected is None:
            return None
        client = request.client.host if request.client else ""
        limits = self._limits()
        exempt = limits.exempt_loopback and is_loopback(client)
        now = time.monotonic()
        until = self._locked_until.get(client, 0.0)
        if not exempt and until > now:
            return 429, "too many failed authentication attempts", until - now
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
            self._failures.pop(client, None)
            return None
        if not exempt:
            window = self._failures.setdefault(client, deque())
            window.append(now)
            while window and window[0] < now - limits.window_ms / 1000:
                window.popleft()
            if len(window) >= limits.max_attempts:
                self._locked_until[client] = now + limits.lockout_ms / 1000
                window.clear()
                return 429, "too many failed authentication attempts", limits.lockout_ms / 1000
        message = "missing bearer token" if not header else "invalid token"
        return 401, message, None

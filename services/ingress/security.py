"""Bearer-token auth with a failed-attempt limiter, and who the client is behind a proxy."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Sequence

from starlette.requests import Request

from clawmesh.config import GatewayRateLimit
from clawmesh.gateway import is_loopback

__all__ = ["AuthGate", "client_address"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Addresses with recent failures the limiter remembers at most; the oldest are forgotten first
# (their window or lockout may not have ended, but memory must stay bounded).
_MAX_TRACKED = 10_000
# How often expired failure windows and lockouts are dropped.
_PRUNE_SECONDS = 60.0


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # Parsed once per list, not per request. The entries were checked when the config was
    # loaded (gateway.trustedProxies).
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: Request, trusted_proxies: Sequence[str]) -> str:
    """The address the request came from. Forwarding headers (`X-Forwarded-For`, else
    `X-Real-IP`) are believed only from a peer in `trusted_proxies` (gateway.trustedProxies):
    the client is the right-most forwarded address that is not itself a trusted proxy."""
    peer = request.client.host if request.client else ""
    if not trusted_proxies:
        return peer
    networks = _networks(tuple(trusted_proxies))

    def trusted(text: str) -> bool:
        ip = _ip(text)
        return ip is not None and any(ip in net for net in networks)

    if not trusted(peer):
        return peer
    chain = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    if not chain and request.headers.get("x-real-ip"):
        chain = [request.headers["x-real-ip"].strip()]
    for hop in reversed(chain):
        if _ip(hop) is None:
            return peer  # a forged or broken header names nobody
        if not trusted(hop):
            return hop
    return chain[0] if chain else peer


class AuthGate:
    """`Authorization: Bearer <token>`; repeated failures from one address are locked out
    (OpenClaw's rateLimit: 10 failures per 60 s → 429 + Retry-After for 300 s)."""

    def __init__(
        self,
        token: Callable[[], str | None],
        limits: Callable[[], GatewayRateLimit],
        trusted_proxies: Callable[[], Sequence[str]] = lambda: (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._limits = limits
        self._trusted_proxies = trusted_proxies
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._next_prune = 0.0

    def tracked(self) -> int:
        """How many addresses the limiter remembers (recent failures or a lockout)."""
        return len(self._failures.keys() | self._locked_until.keys())

    def _prune(self, now: float, window: float) -> None:
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_SECONDS
            self._locked_until = {a: t for a, t in self._locked_until.items() if t > now}
            self._failures = {a: w for a, w in self._failures.items() if w and w[-1] >= now - window}
        for table in (self._failures, self._locked_until):
            while len(table) > _MAX_TRACKED:
                del table[next(iter(table))]

    def check(self, request: Request) -> tuple[int, str, float | None] | None:
        """None when allowed, else (status, message, retry_after)."""
        expected = self._token()
        if expected is None:
            return None
        client = client_address(request, self._trusted_proxies())
        limits = self._limits()
        exempt = limits.exempt_loopback and is_loopback(client)
        now = self._clock()
        self._prune(now, limits.window_ms / 1000)
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
                del self._failures[client]
                return 429, "too many failed authentication attempts", limits.lockout_ms / 1000
        message = "missing bearer token" if not header else "invalid token"
        return 401, message, None

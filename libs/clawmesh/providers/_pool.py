"""SDK clients per event loop and credential, all sharing one HTTP connection pool.

A busy runner makes many calls to the same endpoint with a handful of keys; one client per key
would open one connection pool per key. Instead a base client owns the pool and per-key clients
are `with_options` copies of it (both SDKs share the underlying `httpx2` client on copy).

Connections belong to the event loop that opened them, so the pool is kept per loop (weakly:
a finished loop, e.g. one per test, takes its clients with it).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["ClientPool", "CredentialKey"]

# (kind, secret): kind is "api_key", "token" (sent as a bearer token) or "none".
CredentialKey = tuple[str, str]


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


ClientT = TypeVar("ClientT", bound=_Closable)


class ClientPool(Generic[ClientT]):
    def __init__(self, make_base: Callable[[], ClientT], derive: Callable[[ClientT, CredentialKey], ClientT]):
        self._make_base = make_base
        self._derive = derive
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[CredentialKey | None, ClientT]]
        self._loops = weakref.WeakKeyDictionary()

    def get(self, credential: CredentialKey) -> ClientT:
        """The client for `credential` on the running loop (created on first use)."""
        clients = self._loops.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(credential)
        if client is None:
            base = clients.get(None)
            if base is None:
                base = clients[None] = self._make_base()
            client = clients[credential] = self._derive(base, credential)
        return client

    async def aclose(self) -> None:
        """Close the running loop's connection pool (the base client owns it)."""
        clients = self._loops.pop(asyncio.get_running_loop(), {})
        base = clients.get(None)
        if base is not None:
            await base.close()

"""What every channel adapter is to ingress: started and stopped per configured account, it
turns platform events into inbound messages (`ChannelInbound.submit`, which asks the access
policy first) and sends the replies ingress consumes from CM_OUTBOUND (`deliver`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from starlette.requests import Request
from starlette.responses import Response

from clawmesh.channels.accounts import AccountSettings, channel_accounts
from clawmesh.config import ChannelAccount
from clawmesh.wire import OutboundMessage

if TYPE_CHECKING:
    from clawmesh.config import ConfigHolder

__all__ = [
    "BackgroundTasks",
    "ChannelAdapter",
    "DeliveryProgress",
    "LiveSettings",
    "PermanentSendError",
    "TransientSendError",
    "WebhookRoute",
    "token_key",
]


class TransientSendError(Exception):
    """Sending failed in a way worth retrying (rate limited, 5xx, no connection);
    `retry_after`: the platform said how long to wait."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentSendError(Exception):
    """Sending can never succeed (chat not found, bot blocked, malformed reply): dead-letter it."""


@dataclass
class DeliveryProgress:
    """Which parts of a reply were sent already (a long reply is several messages), kept in KV
    so a redelivered reply continues where the last attempt stopped instead of starting again."""

    sent: list[str] = field(default_factory=list)  # platform ids of the parts sent, in order
    record: Callable[[list[str]], Awaitable[None]] | None = None

    async def part_sent(self, platform_id: str, *, last: bool = False) -> None:
        """After each part; the last one is recorded with the whole reply by the caller."""
        self.sent.append(platform_id)
        if self.record is not None and not last:
            await self.record(self.sent)


@dataclass(frozen=True)
class WebhookRoute:
    """An HTTP endpoint a platform calls: on its own listener (`host`:`port`), or with both
    None on ingress's own HTTP server (OpenClaw serves Slack's Request URL on the gateway port)."""

    host: str | None
    port: int | None
    path: str
    handler: Callable[[Request], Awaitable[Response]]
    methods: tuple[str, ...] = ("POST",)


class ChannelAdapter(Protocol):
    """One account of one platform."""

    channel: ClassVar[str]
    account: AccountSettings

    async def start(self) -> None: ...

    async def stop_inbound(self) -> None:
        """Stop taking platform events (replies may still be delivered)."""
        ...

    async def stop(self) -> None: ...

    async def deliver(self, out: OutboundMessage, progress: DeliveryProgress) -> None:
        """Send the reply's parts not in `progress.sent`, calling `progress.part_sent` after
        each; TransientSendError or PermanentSendError when it cannot."""
        ...

    def webhook_routes(self) -> list[WebhookRoute]: ...

    def status(self) -> dict[str, Any]: ...


def token_key(token: str) -> str:
    """A KV key token for a bot token (its lease, its saved offset or session): the same for
    every account and replica using it, and not the token (KV keys are visible to anyone who
    can list the bucket)."""
    return hashlib.blake2b(token.encode(), digest_size=12).hexdigest()


class LiveSettings:
    """An account's settings as the current config has them, so a config reload applies from
    the next message on (what an adapter started with — token, transport, API base — needs an
    ingress restart)."""

    def __init__(self, holder: ConfigHolder, channel: str, account: AccountSettings) -> None:
        self._holder = holder
        self._channel = channel
        self._config = holder.current
        self._account = account

    def get(self) -> ChannelAccount:
        current = self._holder.current
        if current is not self._config:
            self._config = current
            accounts = channel_accounts(current.document.channels, self._channel)
            # an account removed by the reload keeps its last settings until ingress restarts it
            self._account = next(
                (a for a in accounts if a.account_id == self._account.account_id), self._account
            )
        return self._account.settings


class BackgroundTasks:
    """Work an adapter starts and does not wait for (a pairing answer, a streamed preview),
    kept referenced until done and cancelled when the adapter stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

"""Long polling (`getUpdates`), one poller per bot token across every ingress replica.

The poller holds a KV lease (`leases`, key `telegram-poll.<token hash>`) while it polls; the
other replicas wait and take over when it lapses (a replica killed or cut off stops renewing).
The offset it has confirmed is kept in KV (`channels`, `telegram.offset.<token hash>`) and
written only after every update before it is stored in CM_INBOUND: a poller that takes over
starts where the last one's stored updates end. Telegram itself keeps an update until a
getUpdates call with a higher offset confirms it, so an update whose storing was not recorded
is fetched again, and its platform message id makes the second copy a duplicate (JetStream's
dedupe window) of the same turn.

A 409 means someone else polls this token (another gateway, a script) or a webhook is set:
the poller backs off instead of fighting over it (Telegram answers conflicts at most every 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from clawmesh.bus import Lease, LeaseLost, Leases, wait_for_stop
from clawmesh.channels.telegram import Update

from ..base import token_key
from .botapi import BotApi, BotApiError, Conflict, NetworkError

__all__ = ["ALLOWED_UPDATES", "Poller", "token_key"]

log = logging.getLogger("clawmesh.ingress.telegram")

POLL_TIMEOUT: Final = 30  # seconds a getUpdates call waits for an update (grammY's default)
CONFLICT_BACKOFF: Final = 5.0
ERROR_BACKOFF_MAX: Final = 30.0
# grammY's defaults plus channel posts (OpenClaw's `allowed-updates.ts`, reactions aside)
ALLOWED_UPDATES: Final = ["message", "edited_message", "channel_post", "callback_query", "my_chat_member"]


class Poller:
    """Polls one bot token while it holds the token's lease; `accept` stores one update (and
    raises when it could not: the offset then stays before it)."""

    def __init__(
        self,
        api: BotApi,
        token: str,
        leases: Leases,
        offsets: KeyValue,
        lease_seconds: float,
        accept: Callable[[Update], Awaitable[None]],
        *,
        account: str,
    ) -> None:
        self.api = api
        self.key = token_key(token)
        self.leases = leases
        self.offsets = offsets
        self.lease_seconds = lease_seconds
        self.accept = accept
        self.account = account
        self.polling = False
        self.conflicts = 0
        self.polls = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def lease_key(self) -> str:
        return f"telegram-poll.{self.key}"

    @property
    def offset_key(self) -> str:
        return f"telegram.offset.{self.key}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self) -> dict[str, Any]:
        return {"polling": self.polling, "polls": self.polls, "conflicts": self.conflicts}

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                lease = await self.leases.acquire(self.lease_key)
            except Exception as exc:
                log.warning("telegram %s: cannot take the poller lease: %s", self.account, exc)
                lease = None
            if lease is None:  # another replica polls this token
                await wait_for_stop(self._stop, self.lease_seconds / 3)
                continue
            log.info("telegram %s: polling (this replica holds the token's lease)", self.account)
            try:
                await self._while_held(lease)
            except Exception as exc:  # NATS trouble saving the offset, say: start over
                log.warning(
                    "telegram %s: polling stopped (%s: %s); restarting", self.account, type(exc).__name__, exc
                )
                await wait_for_stop(self._stop, 1.0)
            finally:
                self.polling = False
                with contextlib.suppress(Exception):
                    await asyncio.shield(lease.release())

    async def _while_held(self, lease: Lease) -> None:
        poll = asyncio.create_task(self._poll())
        try:
            while not poll.done():
                done, _ = await asyncio.wait({poll}, timeout=self.lease_seconds / 3)
                if done:
                    break
                try:
                    await lease.renew()
                except LeaseLost:
                    log.warning("telegram %s: lost the poller lease; another replica polls now", self.account)
                    return
                except Exception as exc:  # a slow round trip: still ours until it expires
                    log.warning("telegram %s: lease renewal failed: %s", self.account, exc)
            await poll  # re-raise what ended it
        finally:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poll

    async def _read_offset(self) -> int | None:
        try:
            entry = await self.offsets.get(self.offset_key)
        except KeyNotFoundError:
            return None
        return int(entry.value) if entry.value else None

    async def _poll(self) -> None:
        offset = await self._read_offset()
        self.polling = True
        delay = 1.0
        saving: asyncio.Task[int] | None = None
        with contextlib.suppress(BotApiError, NetworkError):
            await self.api.delete_webhook()  # polling and a webhook exclude each other
        while not self._stop.is_set():
            try:
                updates = await self.api.get_updates(offset, POLL_TIMEOUT, ALLOWED_UPDATES)
                self.polls += 1
                delay = 1.0
            except Conflict as exc:
                self.conflicts += 1
                log.warning("telegram %s: %s; backing off", self.account, exc.description)
                await wait_for_stop(self._stop, CONFLICT_BACKOFF)
                continue
            except (BotApiError, NetworkError) as exc:
                log.warning("telegram %s: getUpdates failed: %s; retrying in %.0fs", self.account, exc, delay)
                await wait_for_stop(self._stop, delay)
                delay = min(delay * 2, ERROR_BACKOFF_MAX)
                continue
            if not updates:
                continue
            failure = await self._store(updates)
            stored = failure[0] if failure is not None else updates[-1].update_id + 1
            if stored != offset:
                # Saved while the next getUpdates waits: the updates before `stored` are in
                # CM_INBOUND already, so a lagging (or lost) save only means a successor fetches
                # a few of them again, as duplicates of their turns.
                if saving is not None:
                    await self._saved(saving)
                saving = asyncio.create_task(self.offsets.put(self.offset_key, str(stored).encode()))
                offset = stored
            if failure is not None:
                log.warning(
                    "telegram %s: an update could not be stored (%s); fetching it again in %.0fs",
                    self.account,
                    failure[1],
                    delay,
                )
                await wait_for_stop(self._stop, delay)
                delay = min(delay * 2, ERROR_BACKOFF_MAX)

    async def _saved(self, saving: asyncio.Task[int]) -> None:
        try:
            await saving
        except Exception as exc:
            log.warning("telegram %s: could not save the getUpdates offset: %s", self.account, exc)

    async def _store(self, updates: list[Update]) -> tuple[int, Exception] | None:
        """Store a batch: each chat's updates in order, different chats concurrently. None when
        all were stored; else the first update (in update order) that was not, and why. Those
        after it are fetched again (the ones stored meanwhile are duplicates of their turns)."""
        chats: dict[int, list[Update]] = {}
        for update in updates:
            msg = update.message or update.channel_post or update.edited_message or update.edited_channel_post
            chats.setdefault(msg.chat.id if msg is not None else 0, []).append(update)
        failed: list[tuple[int, Exception]] = []

        async def chat_in_order(batch: list[Update]) -> None:
            for update in batch:
                try:
                    await self.accept(update)
                except Exception as exc:  # not stored: fetched again from here
                    failed.append((update.update_id, exc))
                    return

        await asyncio.gather(*(chat_in_order(batch) for batch in chats.values()))
        return min(failed, key=lambda f: f[0]) if failed else None

"""Streamed reply previews, for every platform that can edit a message it sent (Telegram,
Discord, Slack): what does not depend on the platform.

The replica that took a message follows its turn's text as it is generated (the turn's
`TextDeltaEvent`s) and shows it in one preview message: sent once the text has something to
show, then edited at most once per the adapter's interval. The preview shows the first message
the reply would be split into (`shown`). Its id is recorded in KV `delivered` as
`preview.<turn id>`, so the final reply — delivered from CM_OUTBOUND by whichever replica takes
it — replaces the preview in place (its first part; the rest follow as new messages) instead of
arriving as a second message. On this replica the preview is stopped first, under its lock, so
no late preview edit overwrites the final text. A preview that cannot be edited any more
(deleted, too old) is not an error: the reply is sent as a new message (and, where the adapter
says how, the preview left behind is removed: `discard`, Slack).

A preview is best effort: a platform error stops it (logged), the final reply still comes.
The platform calls stay in the adapters, given here as callbacks: `send` a new message into
the turn's chat (its id), `edit` a message's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError

from clawmesh.bus import ServiceContext
from clawmesh.wire import TextDeltaEvent

from ..turns import PendingTurn
from .base import DeliveryProgress

__all__ = ["PreviewRecord", "Previews"]

_PREVIEWS_KEPT: Final = 10_000

# a platform's message ids: Telegram's are numbers, Discord's snowflakes strings
Id = TypeVar("Id", int, str)


class PreviewRecord(msgspec.Struct):
    """KV `delivered`, `preview.<turn id>`: where a turn's preview is, for the replica that
    delivers its final reply."""

    chat_id: int | str
    message_id: int | str


@dataclass
class _Preview(Generic[Id]):
    """A streamed answer's preview message; `finished` once the final reply took it over."""

    chat_id: Id
    message_id: Id | None = None
    finished: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Previews(Generic[Id]):
    """The streamed previews of one account. `failures`: the platform client's errors (a
    preview stops on them); `log`: the adapter's logger (its lines name the channel)."""

    def __init__(
        self,
        ctx: ServiceContext,
        channel: str,
        account_id: str,
        id_type: type[Id],
        *,
        failures: tuple[type[Exception], ...],
        log: logging.Logger,
    ) -> None:
        self.ctx = ctx
        self.channel = channel
        self.account_id = account_id
        self._id_type: type[Id] = id_type
        self._failures = failures
        self._log = log
        self._previews: OrderedDict[str, _Preview[Id]] = OrderedDict()
        self._block_noted = False

    def served(self, mode: str | None, block_note: str) -> Literal["partial", "off"]:
        """A configured `streaming` mode as this preview serves it: `partial`; `block` as
        `partial` (`block_note` says how, once in the log); anything else (`off`, `progress`,
        which the config loader warns about) as `off`."""
        if mode == "block":
            if not self._block_noted:
                self._block_noted = True
                self._log.info(
                    '%s %s: streaming mode "block" is served as "partial" (%s)',
                    self.channel,
                    self.account_id,
                    block_note,
                )
            return "partial"
        return "partial" if mode == "partial" else "off"

    # --- while the turn runs ----------------------------------------------------------------

    async def stream(
        self,
        turn: PendingTurn,
        chat_id: Id,
        *,
        send: Callable[[str], Awaitable[Id]],
        edit: Callable[[Id, str], Awaitable[None]],
        shown: Callable[[str], str],
        interval: Callable[[], float],
        timeout: float,
        min_chars: int = 0,
    ) -> None:
        """Follow the turn's text as it is generated and show it in a preview message, edited
        at most once per `interval()` seconds; the final reply (`deliver`) takes the preview
        over. `shown`: the part of the text so far the preview shows (the reply's first
        message); `min_chars`: the first preview waits for that much text (a notification
        that says something). `timeout`: the longest wait for the turn's next event."""
        preview: _Preview[Id] = _Preview(chat_id=chat_id)
        self._previews[turn.turn_id] = preview
        while len(self._previews) > _PREVIEWS_KEPT:
            self._previews.popitem(last=False)
        parts: list[str] = []
        changed = asyncio.Event()
        following = True

        async def follow() -> None:
            nonlocal following
            try:
                async for event in turn.events(timeout):
                    if isinstance(event, TextDeltaEvent) and event.text:
                        parts.append(event.text)
                        changed.set()
            except TimeoutError:
                pass
            finally:
                following = False
                changed.set()

        async def show() -> None:
            while True:
                await changed.wait()
                changed.clear()
                if not following:
                    return  # the final reply replaces whatever the preview shows
                text = "".join(parts)
                if not text.strip():
                    continue
                if preview.message_id is None and len(text.strip()) < min_chars:
                    continue
                async with preview.lock:
                    if preview.finished:
                        return
                    first = shown(text)
                    if preview.message_id is None:
                        preview.message_id = await send(first)
                        record = PreviewRecord(chat_id=chat_id, message_id=preview.message_id)
                        await self.ctx.kv["delivered"].put(
                            f"preview.{turn.turn_id}", msgspec.json.encode(record)
                        )
                    else:
                        await edit(preview.message_id, first)
                    self.ctx.counters[f"{self.channel}_preview_updates"] += 1
                await asyncio.sleep(interval())  # the rate bound, not a synchronisation

        try:
            await asyncio.gather(follow(), show())
        except self._failures as exc:  # a preview is best effort: the final reply still comes
            self._log.info(
                "%s %s: preview of turn %s stopped: %s", self.channel, self.account_id, turn.turn_id, exc
            )
        finally:
            turn.close()

    # --- the final reply --------------------------------------------------------------------

    async def take(self, turn_id: str, *, recorded: bool) -> Id | None:
        """The preview message of a streamed turn, which the final reply replaces: this
        replica's own (stopped first, so no late edit overwrites the final text), or — when
        `recorded` (the account streams) — one another replica recorded."""
        preview = self._previews.pop(turn_id, None)
        if preview is not None:
            async with preview.lock:
                preview.finished = True
                return preview.message_id
        if not recorded:
            return None
        try:
            entry = await self.ctx.kv["delivered"].get(f"preview.{turn_id}")
        except KeyNotFoundError:
            return None
        try:
            message_id = msgspec.json.decode(entry.value or b"", type=PreviewRecord).message_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return message_id if isinstance(message_id, self._id_type) else None

    async def deliver(
        self,
        turn_id: str,
        pieces: Sequence[str],
        progress: DeliveryProgress,
        *,
        send: Callable[[int, str], Awaitable[Id]],
        edit: Callable[[Id, str], Awaitable[None]],
        not_editable: Callable[[Exception], bool],
        recorded: bool,
        discard: Callable[[Id], Awaitable[None]] | None = None,
    ) -> None:
        """Send the reply's parts not in `progress.sent`: the first replaces the turn's
        preview when there is one (`take`), unless it cannot be edited (`not_editable` says so
        of the platform's error; anything else is raised); every other part is `send(index,
        text)`. A preview that could not be edited is then given to `discard` (when given: to
        remove what it still shows; best effort) once the first part was sent anew. The
        platform's errors are the caller's to map."""
        preview = await self.take(turn_id, recorded=recorded) if not progress.sent else None
        for index, piece in enumerate(pieces):
            if index < len(progress.sent):
                continue
            if index == 0 and preview is not None and await self._edited(preview, piece, edit, not_editable):
                sent_id = preview
            else:
                sent_id = await send(index, piece)
                if index == 0 and preview is not None and discard is not None:
                    await self._discard(preview, discard)
            await progress.part_sent(str(sent_id), last=index == len(pieces) - 1)

    async def _discard(self, message_id: Id, discard: Callable[[Id], Awaitable[None]]) -> None:
        try:
            await discard(message_id)
        except self._failures as exc:  # best effort: the reply itself was sent
            self._log.info(
                "%s %s: preview %s left as it is: %s", self.channel, self.account_id, message_id, exc
            )

    async def _edited(
        self,
        message_id: Id,
        text: str,
        edit: Callable[[Id, str], Awaitable[None]],
        not_editable: Callable[[Exception], bool],
    ) -> bool:
        """Replace a preview's text; False when the preview cannot be edited (deleted, too old):
        the reply is then sent as a new message."""
        try:
            await edit(message_id, text)
        except Exception as exc:
            if not not_editable(exc):
                raise
            self._log.info(
                "%s %s: preview %s not editable (%s); sending anew",
                self.channel,
                self.account_id,
                message_id,
                exc,
            )
            return False
        return True

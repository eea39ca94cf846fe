"""Group chatter as context (OpenClaw's `historyLimit`): a group message the bot is not asked
to answer (mention gating) is kept, up to `historyLimit` per conversation, and the next message
it answers there carries them (`InboundMessage.history`), oldest first; then they are gone
("since your last reply"). Kept in the `channels` KV bucket, so any ingress replica sees what
another one kept; written with compare-and-set, so two replicas do not lose each other's."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Final

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from clawmesh.channels import AccessRequest
from clawmesh.channels.accounts import channel_accounts
from clawmesh.config import Config
from clawmesh.wire import HistoryLine, InboundMessage, encode_token

__all__ = ["DEFAULT_LIMIT", "GroupHistory", "history_limit"]

log = logging.getLogger("clawmesh.ingress.channels")

DEFAULT_LIMIT: Final = 50  # OpenClaw's DEFAULT_GROUP_HISTORY_LIMIT
_MAX_LIMIT: Final = 200  # OpenClaw's MAX_PROMPT_HISTORY_LIMIT
_BODY_LIMIT: Final = 2000  # characters of one kept message (OpenClaw's context string bound)
_ATTEMPTS: Final = 5
_LINES: Final = msgspec.json.Decoder(list[HistoryLine])


def history_limit(config: Config, channel: str, account: str) -> int:
    """`historyLimit` of the account (or its channel), else `messages.groupChat.historyLimit`,
    else 50; within 0..200 as OpenClaw bounds it."""
    settings = next(
        (a.settings for a in channel_accounts(config.document.channels, channel) if a.account_id == account),
        None,
    )
    configured = settings.history_limit if settings is not None else None
    if configured is None:
        messages = config.document.messages
        chat = messages.group_chat if messages is not None else None
        configured = chat.history_limit if chat is not None else None
    return min(max(0, configured if configured is not None else DEFAULT_LIMIT), _MAX_LIMIT)


def _key(request: AccessRequest, inbound: InboundMessage) -> str:
    """The conversation: the group (a Telegram forum topic is a peer of its own), and the thread
    the policy was asked about. Not the reply's thread, which may be the message's own (Slack's
    `replyToMode: all` answers each top-level message in a thread under it)."""
    peer = inbound.peer
    conversation = f"{peer.kind}:{peer.id}" if peer is not None else ""
    if request.thread_id:
        conversation += f":thread:{request.thread_id}"
    # one KV token per conversation, whatever its length (ids are bounded, not short)
    digest = hashlib.blake2b(conversation.encode(), digest_size=16).hexdigest()
    return f"history.{encode_token(inbound.channel)}.{encode_token(inbound.account_id)}.{digest}"


class GroupHistory:
    def __init__(self, kv: KeyValue | None) -> None:
        self.kv = kv

    async def keep(
        self, request: AccessRequest, inbound: InboundMessage, limit: int, media: Sequence[str] = ()
    ) -> None:
        """Keep a group message the bot was not asked to answer (the newest `limit`); `media`:
        the types of the files it carried (never downloaded)."""
        if self.kv is None or limit <= 0 or request.chat_type == "direct":
            return
        sender = inbound.sender
        line = HistoryLine(
            sender=(sender.name or sender.username or sender.id) if sender is not None else "",
            body=inbound.text[:_BODY_LIMIT],
            message_id=(inbound.message_id or "").rsplit(":", 1)[-1],
            ts=inbound.received_at,
            media=[*(a.mime for a in inbound.attachments), *media],
        )
        key = _key(request, inbound)
        for _ in range(_ATTEMPTS):
            lines, revision = await self._read(key)
            data = msgspec.json.encode([*lines, line][-limit:])
            try:
                if revision is None:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another replica kept one meanwhile: read again
        log.warning("group history %s: kept nothing after %d conflicting writes", key, _ATTEMPTS)

    async def take(self, request: AccessRequest, inbound: InboundMessage, limit: int) -> list[HistoryLine]:
        """What was kept for the conversation of a message the bot answers, emptied."""
        if self.kv is None or limit <= 0 or request.chat_type == "direct":
            return []
        key = _key(request, inbound)
        for _ in range(_ATTEMPTS):
            lines, revision = await self._read(key)
            if revision is None or not lines:
                return []
            try:
                await self.kv.update(key, b"[]", last=revision)
            except KeyWrongLastSequenceError:
                continue
            return lines[-limit:]
        return []

    async def _read(self, key: str) -> tuple[list[HistoryLine], int | None]:
        assert self.kv is not None
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return [], None
        try:
            return _LINES.decode(entry.value or b"[]"), entry.revision
        except msgspec.DecodeError:
            return [], entry.revision  # unreadable: overwritten by the next write

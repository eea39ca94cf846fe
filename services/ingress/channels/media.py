"""A chat message's files, downloaded once the access policy admitted the message and kept in
the `media` object store for the turn (`clawmesh.media`): adapters say what a message carries
(`InboundFile`, with how to fetch it), `MediaKeeper` fetches within the account's `mediaMaxMb`
and stores. A file that cannot be taken is named in the message's text instead, so the agent
knows something was sent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from clawmesh.bus import ServiceContext
from clawmesh.media import MediaStoreError, media_store, object_name, write_object
from clawmesh.wire import Attachment

__all__ = ["InboundFile", "MediaError", "MediaKeeper", "MediaTooLarge", "mb_limit", "missing_line"]

log = logging.getLogger("clawmesh.ingress.channels")

_MB: Final = 1024 * 1024


class MediaError(Exception):
    """The platform would not give the file (too large, refused, gone, network)."""


class MediaTooLarge(MediaError):
    """Over the limit, found out only while fetching (the platform did not say its size before)."""


@dataclass(frozen=True)
class InboundFile:
    """A file a platform message carries, not downloaded yet."""

    kind: str  # what the note calls it when it cannot be taken: photo, document, voice message…
    name: str
    mime: str
    size: int | None  # what the platform says, when it says
    # the bytes, refusing more than the limit given (raises MediaError)
    fetch: Callable[[int], Awaitable[bytes]]


def missing_line(kind: str, why: str) -> str:
    """What the agent reads instead of a file it does not get: `[a video was sent; <why>]`."""
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"[{article} {kind} was sent; {why}]"


def mb_limit(media_max_mb: float | None, default_mb: float) -> int:
    """`mediaMaxMb` (the account's, else the channel's default) in bytes."""
    return max(0, int((media_max_mb if media_max_mb is not None else default_mb) * _MB))


class MediaKeeper:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.store = media_store(ctx.js, ctx.subjects.prefix)

    async def keep(
        self, turn_id: str, files: Sequence[InboundFile], limit: int
    ) -> tuple[list[Attachment], list[str]]:
        """Each file fetched (at most `limit` bytes) and stored under the turn: its attachment,
        or a line saying why it is missing."""
        counters = self.ctx.counters
        attachments: list[Attachment] = []
        missing: list[str] = []
        too_large = f"larger than the {limit} bytes taken in"
        for index, f in enumerate(files):
            if f.size is not None and f.size > limit:
                counters["media_too_large"] += 1
                missing.append(missing_line(f.kind, f"it is {too_large}"))
                continue
            try:
                data = await f.fetch(limit)
                if len(data) > limit:
                    raise MediaTooLarge(f"{len(data)} bytes; at most {limit} are taken")
                ref = object_name(turn_id, index)
                await write_object(self.store, ref, data)
            except MediaTooLarge as exc:
                counters["media_too_large"] += 1
                log.info("%s %r not taken in: %s", f.kind, f.name, exc)
                missing.append(missing_line(f.kind, f"it is {too_large}"))
                continue
            except (MediaError, MediaStoreError) as exc:
                counters["media_failed"] += 1
                log.warning("%s %r not taken in: %s", f.kind, f.name, exc)
                missing.append(missing_line(f.kind, "it could not be received"))
                continue
            counters["media_in"] += 1
            attachments.append(Attachment(name=f.name, mime=f.mime, size=len(data), ref=ref))
        return attachments, missing

"""A chat message's files, downloaded once the access policy admitted the message and kept in
the `media` object store for the turn (`clawmesh.media`): adapters say what a message carries
(`InboundFile`, with how to fetch it), `MediaKeeper` fetches within the account's `mediaMaxMb`
and stores. A file that cannot be taken is named in the message's text instead, so the agent
knows something was sent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from clawmesh.bus import ServiceContext
from clawmesh.media import MediaStoreError, media_store, object_name, write_object
from clawmesh.wire import Attachment

__all__ = [
    "InboundFile",
    "MediaError",
    "MediaKeeper",
    "MediaTooLarge",
    "missing_line",
    "read_body",
]

log = logging.getLogger("clawmesh.ingress.channels")


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


async def read_body(resp: httpx.Response, limit: int) -> bytes:
    """A streamed download's body, refused (MediaTooLarge) as soon as it is known to be more
    than `limit` bytes — by its Content-Length or while reading — whatever the platform said of
    its size before; the rest is never read."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MediaTooLarge(f"{declared} bytes; at most {limit} are taken")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise MediaTooLarge(f"more than {limit} bytes; at most {limit} are taken")
        chunks.append(chunk)
    return b"".join(chunks)


def missing_line(kind: str, why: str) -> str:
    """What the agent reads instead of a file it does not get: `[a video was sent; <why>]`."""
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return f"[{article} {kind} was sent; {why}]"


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

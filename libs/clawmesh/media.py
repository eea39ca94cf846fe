"""Inbound files (documents, voice, video, images) from chats into the agent's workspace.

A file does not travel inside the inbound message: ingress downloads it once the access policy
admitted the message, keeps it in the JetStream object store `cm_media` (one object per file,
named `<turn id>.<n>`, kept a day) and the message carries an `Attachment` with that `ref`. When
the turn runs, the runner asks the node that runs the agent's file tools to *stage* the files
into the workspace the agent's tools see (`stage_media`, not a model tool), where OpenClaw
stages them (`media/inbound/openclaw-staged-<id>/input-<name>`, with its `.gitignore`), and
puts OpenClaw's note (`[media attached: <path> (<mime>) "<name>"]`) before the message's text.
Images also reach the model as image parts.

Why an object store: a file can be far larger than a NATS message (Telegram lets a bot take
20 MB, `mediaMaxMb` allows 100), the node that stages it may be on another machine than the
ingress that received it, and a turn may wait in its session's queue for a while.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, BinaryIO, Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_STREAM_TEMPLATE, ObjectStore

__all__ = [
    "GITIGNORE",
    "MEDIA_BUCKET",
    "STAGE_MEDIA_TOOL",
    "MediaStoreError",
    "StageFile",
    "StageMediaArgs",
    "Staged",
    "media_note",
    "media_store",
    "object_name",
    "read_object",
    "safe_file_name",
    "staged_directory",
    "write_object",
]

MEDIA_BUCKET: Final = "media"  # the object store `<prefix>_media`
STAGE_MEDIA_TOOL: Final = "stage_media"  # the node invocation (never offered to a model)
# OpenClaw's marker: a staged directory is private input; git and its own tools skip it
GITIGNORE: Final = "# Raw task inputs remain private; copy outputs into the project to publish.\n*\n"
_STAGED_PREFIX: Final = "media/inbound/openclaw-staged-"
_NAME_LIMIT: Final = 200  # characters of a staged file name (fs-safe's SANITIZED_FILE_NAME_CODE_UNITS)
_INVALID: Final = re.compile(r"[\x00-\x1f\x7f-\x9f<>:\"/\\|?*]")


class MediaStoreError(Exception):
    """A file could not be kept or read back (store full, gone after its day, NATS trouble)."""


def media_store(js: JetStreamContext, prefix: str) -> ObjectStore:
    """The `media` object store (provisioning created it): a handle, without a round trip."""
    bucket = f"{prefix}_{MEDIA_BUCKET}"
    return ObjectStore(name=bucket, stream=OBJ_STREAM_TEMPLATE.format(bucket=bucket), js=js)


async def write_object(store: ObjectStore, name: str, data: bytes) -> None:
    try:
        await store.put(name, data)
    except Exception as exc:  # nats-py's purge-on-failure may itself be refused: say what failed
        raise MediaStoreError(f"could not keep {name}: {type(exc).__name__}: {exc}") from None


async def read_object(store: ObjectStore, name: str, limit: int, into: BinaryIO | None = None) -> bytes:
    """An object's bytes (or written `into` a file, returning nothing), refused above `limit`
    before any chunk is read."""
    buffer = io.BytesIO()
    try:
        info = await store.get_info(name)
        if (info.size or 0) > limit:
            raise MediaStoreError(f"{name} is {info.size} bytes; at most {limit} are taken")
        # into a file object: nats-py's own buffer grows by concatenation, chunk after chunk
        await store.get(name, writeinto=into or buffer)  # type: ignore[arg-type]
        return buffer.getvalue()
    except (ObjectNotFoundError, NotFoundError):
        raise MediaStoreError(f"{name} is no longer kept (files are kept a day)") from None
    except MediaStoreError:
        raise
    except Exception as exc:
        raise MediaStoreError(f"could not read {name}: {type(exc).__name__}: {exc}") from None


def object_name(turn_id: str, index: int) -> str:
    """The object holding the `index`-th file of the message that became turn `turn_id`: a
    platform's redelivery is the same turn, so it overwrites, never adds."""
    return f"{turn_id}.{index}"


def staged_directory(turn_id: str) -> str:
    """Where a turn's files go, relative to the workspace: OpenClaw's staged-input directory
    (its 64-hex form), one per turn, so a turn run again stages into the same place."""
    return _STAGED_PREFIX + hashlib.sha256(turn_id.encode()).hexdigest()


def _basename(name: str) -> str:
    """The last component of a POSIX or Windows path, drive prefix dropped (OpenClaw's
    basenameFromAnyPath, for the name the note shows)."""
    base = _last_component(name)
    if len(base) >= 2 and base[1] == ":" and base[0].isascii() and base[0].isalpha():
        base = base[2:]  # `C:report.pdf`
    return "" if base in (".", "..") else base


def _last_component(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].rstrip("\\").rsplit("\\", 1)[-1]


def safe_file_name(name: str, fallback: str = "attachment") -> str:
    """A platform's file name as one path component, as OpenClaw stages it
    (`stagedInputFileName`: @openclaw/fs-safe's sanitizeUntrustedFileName of `input-<name>`):
    control and reserved characters removed, trimmed, at most 200 characters. Only the name's
    last component is taken first, so the `input-` prefix always stays (OpenClaw's names are
    basenames of its own files already)."""
    staged = _INVALID.sub("", f"input-{_last_component(name)}").strip()
    return staged[:_NAME_LIMIT] if staged not in ("", ".", "..") else f"input-{fallback}"


class StageFile(msgspec.Struct, frozen=True, kw_only=True):
    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    name: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    mime: Annotated[str, msgspec.Meta(max_length=256)] = "application/octet-stream"


class StageMediaArgs(msgspec.Struct, frozen=True, kw_only=True):
    """`stage_media`'s arguments: the turn's files, in the message's order."""

    turn_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    files: Annotated[list[StageFile], msgspec.Meta(min_length=1, max_length=64)]


class Staged(msgspec.Struct, frozen=True, kw_only=True):
    """One staged file (`stage_media`'s result is a JSON list of them): where it is, relative
    to the workspace the agent's tools see, or why it is not there."""

    name: str
    mime: str
    path: str = ""
    error: str = ""


def unique_names(files: Sequence[StageFile]) -> list[str]:
    """Each file's staged name, `-1`, `-2`… added to repeats (OpenClaw's allocateStagedFileName)."""
    used: set[str] = set()
    names = []
    for f in files:
        name = safe_file_name(f.name)
        path = PurePosixPath(name)
        stem, suffix, n = path.stem, path.suffix, 1
        while name in used:
            name = f"{stem}-{n}{suffix}"
            n += 1
        used.add(name)
        names.append(name)
    return names


@dataclass(frozen=True)
class NoteFact:
    path: str  # where the agent finds the file; empty when it could not be staged
    mime: str
    name: str


def _clean(value: str) -> str:
    # OpenClaw's sanitizeInlineMediaNoteValue: control characters and `]` become spaces
    return " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\]]+", " ", value).split())


def _line(fact: NoteFact, index: int | None = None, total: int | None = None) -> str:
    prefix = f"[media attached {index}/{total}: " if index is not None else "[media attached: "
    path = _clean(fact.path) or "(not saved)"
    mime = _clean(fact.mime)
    name = _clean(_basename(fact.name))[:256]
    return f"{prefix}{path}{f' ({mime})' if mime else ''}{f' {json.dumps(name, ensure_ascii=False)}' if name else ''}]"


def media_note(facts: Sequence[NoteFact]) -> str:
    """OpenClaw's note for a message's files (`buildInboundMediaNoteProjection`): one line, or a
    count line then one numbered line per file."""
    if not facts:
        return ""
    if len(facts) == 1:
        return _line(facts[0])
    total = len(facts)
    return "\n".join(
        [f"[media attached: {total} files]", *(_line(f, i, total) for i, f in enumerate(facts, 1))]
    )

"""`stage_media`: a turn's chat files from the `media` object store into the workspace the
agent's tools see (`clawmesh.media`), under OpenClaw's staged-input directory with its
`.gitignore`. Each file is written through the workspace's own guard (no symlink on the way is
followed), straight from the store's chunks to the file."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from nats.js.object_store import ObjectStore

from clawmesh.media import (
    GITIGNORE,
    MediaStoreError,
    Staged,
    StageMediaArgs,
    read_object,
    staged_directory,
    unique_names,
)
from clawmesh.tools.files import FileToolError, Workspace

__all__ = ["STAGE_LIMIT", "stage_files"]

log = logging.getLogger("clawmesh.node_agent")

# OpenClaw stages at most 50 MB per file (STAGED_INPUT_MAX_BYTES); Telegram's mediaMaxMb
# default is 100, so the larger of the two
STAGE_LIMIT: Final = 100 * 1024 * 1024


async def stage_files(store: ObjectStore, workspace: Workspace, args: StageMediaArgs) -> list[Staged]:
    """Where each file is now, relative to the workspace, or why it is not there."""
    directory = staged_directory(args.turn_id)
    await asyncio.to_thread(workspace.write, f"{directory}/.gitignore", GITIGNORE)
    staged = []
    for f, name in zip(args.files, unique_names(args.files), strict=True):
        path = f"{directory}/{name}"
        try:
            fh = await asyncio.to_thread(workspace.open_for_writing, path)
            try:
                await read_object(store, f.ref, STAGE_LIMIT, into=fh)
            finally:
                await asyncio.to_thread(fh.close)
        except (MediaStoreError, FileToolError, OSError) as exc:
            log.warning("%s not staged at %s: %s", f.name or f.ref, path, exc)
            staged.append(Staged(name=f.name, mime=f.mime, error=str(exc)))
            continue
        staged.append(Staged(name=f.name, mime=f.mime, path=path))
    return staged

"""A turn's chat files, before the model sees it (`clawmesh.media`): the node that runs the
agent's file tools stages them into the workspace those tools see, the message's text gets
OpenClaw's `[media attached: …]` note in front (so the transcript keeps where they are), and
images are read back from the store to reach the model as image parts.

Staging is idempotent (one directory per turn id), so a turn run again after a runner crash
stages the same files into the same place. A file that cannot be staged (no node offers files,
the store no longer has it) is still named in the note, as not saved, and the turn goes on."""

from __future__ import annotations

import logging
import uuid
from typing import Final

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from clawmesh.bus import ServiceContext, inject
from clawmesh.config import AgentView
from clawmesh.errors import best_effort
from clawmesh.media import (
    STAGE_MEDIA_TOOL,
    MediaStoreError,
    NoteFact,
    Staged,
    StageFile,
    StageMediaArgs,
    media_note,
    media_store,
    read_object,
)
from clawmesh.nodes import NodeDirectory
from clawmesh.wire import (
    Attachment,
    DecodeFailure,
    ToolInvocationResult,
    TurnRequest,
    decode,
    encode_json,
)
from clawmesh.wire import ToolInvocation as _Invocation

__all__ = ["take_media"]

log = logging.getLogger("clawmesh.runner")

# what one image part may weigh (providers refuse more: Anthropic 5 MB, OpenAI 20 MB)
IMAGE_LIMIT: Final = 5 * 1024 * 1024
_STAGE_TIMEOUT: Final = 120.0  # a node reads up to mediaMaxMb per file from the store
_STAGED_LIST: Final = msgspec.json.Decoder(list[Staged])


async def take_media(
    ctx: ServiceContext, turn: TurnRequest, agent: AgentView, directory: NodeDirectory
) -> TurnRequest:
    """The turn as the model and the transcript see it: files staged and noted, images inline."""
    inbound = turn.inbound
    files = [a for a in inbound.attachments if a.ref]
    if not files:
        return turn
    staged = await _stage(ctx, turn, agent, directory, files)
    note = media_note(
        [NoteFact(path=s.path, mime=a.mime, name=a.name) for a, s in zip(files, staged, strict=True)]
    )
    store = media_store(ctx.js, ctx.subjects.prefix)
    attachments: list[Attachment] = []
    for a in inbound.attachments:
        if a.ref and a.data is None and a.mime.startswith("image/") and (a.size or 0) <= IMAGE_LIMIT:
            try:
                a = msgspec.structs.replace(a, data=await read_object(store, a.ref, IMAGE_LIMIT))
            except MediaStoreError as exc:
                ctx.counters["media_image_missing"] += 1
                log.warning("turn %s: image %r not given to the model: %s", turn.turn_id, a.name, exc)
        attachments.append(a)
    text = "\n".join(t for t in (note, inbound.text) if t).strip()
    return msgspec.structs.replace(
        turn, inbound=msgspec.structs.replace(inbound, text=text, attachments=attachments)
    )


async def _stage(
    ctx: ServiceContext,
    turn: TurnRequest,
    agent: AgentView,
    directory: NodeDirectory,
    files: list[Attachment],
) -> list[Staged]:
    """Where each file was staged, or why it was not (one entry per file, in order)."""

    def failed(why: str) -> list[Staged]:
        ctx.counters["media_not_staged"] += 1
        log.warning("turn %s: files not staged: %s", turn.turn_id, why)
        return [Staged(name=a.name, mime=a.mime, error=why) for a in files]

    chosen, why_not = await directory.pick(agent.node, "files")
    if chosen is None:
        return failed(why_not)
    node_id = chosen.node.node_id
    args = StageMediaArgs(
        turn_id=turn.turn_id,
        files=[StageFile(ref=a.ref or "", name=a.name, mime=a.mime) for a in files],
    )
    inv = _Invocation(
        invocation_id=uuid.uuid4().hex,
        tool=STAGE_MEDIA_TOOL,
        arguments=msgspec.to_builtins(args),
        agent_id=turn.agent_id,
        session_key=turn.session_key,
        main_session_key=turn.route.main_session_key,
        turn_id=turn.turn_id,
        timeout=_STAGE_TIMEOUT,
    )
    data, headers = encode_json(inv)
    try:
        reply = await ctx.nc.request(
            ctx.subjects.node_invoke(node_id), data, timeout=_STAGE_TIMEOUT, headers=inject(headers)
        )
        result = decode(reply.data, ToolInvocationResult, reply.headers)
    except NoRespondersError:
        return failed(f"node '{node_id}' is offline")
    except (TimeoutError, NatsTimeout):
        return failed(f"node '{node_id}' did not answer within {_STAGE_TIMEOUT:.0f}s")
    except DecodeFailure as exc:
        return failed(f"node '{node_id}' sent an invalid reply: {exc}")
    if not result.ok:
        return failed(f"node '{node_id}': {result.error_code or 'ERROR'}: {result.content}")
    staged: list[Staged] | None = None
    with best_effort(ctx.counters, "media_stage_reply", log=log):
        staged = _STAGED_LIST.decode(result.content)
    if staged is None or len(staged) != len(files):
        return failed(f"node '{node_id}' answered for {len(staged or [])} of {len(files)} files")
    for s in staged:
        if s.error:
            log.warning("turn %s: %s not staged: %s", turn.turn_id, s.name, s.error)
    return staged

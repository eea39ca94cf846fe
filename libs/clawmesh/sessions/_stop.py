"""Stopping a session and, with it, every sub-agent run it spawned (OpenClaw's cascade stop).

A stop is two things, so that it reaches a turn wherever and whenever it runs: a `StopRecord`
in KV (a turn of the session routed before it, not started yet, ends as stopped when it
starts) and a `StopRequest` on `cm.ctl.stop` (a runner running a turn of the session cancels
it between model and tool steps; a cancelled turn ends with `TURN_STOPPED`). `stop_turn` stops
one turn of a session and what it spawned, not the session's other turns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..wire import StopRequest, encode_json
from ._records import StopRecord
from ._store import SessionStore

__all__ = ["descendant_keys", "stop_session", "stop_turn"]

# Publish one core NATS message (subject, payload, headers).
Publish = Callable[..., Awaitable[None]]


async def descendant_keys(store: SessionStore, session_key: str, *, running_only: bool = False) -> list[str]:
    """Every session spawned from `session_key`, their children, and so on (breadth first),
    from the child indexes; `running_only`: only those still listed as running."""
    out: list[str] = []
    seen = {session_key}
    queue = [session_key]
    while queue:
        index = await store.get_children(queue.pop(0))
        for child in index.running + ([] if running_only else index.ended):
            if child not in seen:
                seen.add(child)
                out.append(child)
                queue.append(child)
    return out


async def stop_session(
    store: SessionStore,
    publish: Publish,
    stop_subject: str,
    session_key: str,
    *,
    reason: str = "",
    cascade: bool = True,
) -> list[str]:
    """Stop `session_key` and (`cascade`) its running descendants; the keys stopped, the
    session first. Runs that ended already are left alone."""
    keys = [session_key]
    if cascade:
        for child in await descendant_keys(store, session_key, running_only=True):
            record = await store.get_spawn(child)
            if record is None or record.status == "running":
                keys.append(child)
    for key in keys:
        await store.put_stop(key, StopRecord(reason=reason))
        data, headers = encode_json(StopRequest(session_key=key, reason=reason))
        await publish(stop_subject, data, headers=headers)
    return keys


async def stop_turn(
    store: SessionStore,
    publish: Publish,
    stop_subject: str,
    session_key: str,
    turn_id: str,
    *,
    reason: str = "",
) -> list[str]:
    """Stop one turn of `session_key` — queued (it ends as stopped when it starts) or running —
    and the sub-agent runs that turn spawned, with theirs; the session's other turns run on.
    The keys stopped besides the session's own."""
    await store.put_turn_stop(turn_id, StopRecord(reason=reason))
    data, headers = encode_json(StopRequest(session_key=session_key, turn_id=turn_id, reason=reason))
    await publish(stop_subject, data, headers=headers)
    stopped: list[str] = []
    for child in (await store.get_children(session_key)).running:
        record = await store.get_spawn(child)
        if record is not None and record.parent_turn_id == turn_id and record.status == "running":
            stopped += await stop_session(store, publish, stop_subject, child, reason=reason)
    return stopped

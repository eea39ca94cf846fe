"""A turn of an agent that lives on another gateway of the federation, over NATS.

The caller publishes a `RemoteTurn` to `<prefix>.gw.<region>.turn.<agent>` with a reply inbox
of its own; the serving gateway's ingress runs it as a local turn (ordered, crash-safe, in the
serving region's session) and streams `RemoteDelta` events back to the inbox, ending with one
`RemoteFinal` or `RemoteError`. The hub exports the family as a *stream* service, so many
replies may follow one request.

The serving gateway's session for a caller's session is `agent:<agent>:gw:<caller
region>:<hash of the caller's session key>`: one remote conversation per local session, and no
caller-chosen string reaches the remote side's keys unhashed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Final, Literal

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from ..wire import encode_token
from ._topology import gateway_subject

__all__ = [
    "FIRST_ALIVE_SECONDS",
    "MAX_REMOTE_TEXT",
    "RemoteAlive",
    "RemoteDelta",
    "RemoteError",
    "RemoteEvent",
    "RemoteFinal",
    "RemoteStop",
    "RemoteTurn",
    "RemoteTurnFailed",
    "remote_node_subject",
    "remote_session_key",
    "remote_stop_subject",
    "remote_turn",
    "remote_turn_subject",
]

MAX_REMOTE_TEXT: Final = 256 * 1024
_Text = Annotated[str, msgspec.Meta(max_length=MAX_REMOTE_TEXT)]
_Short = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RemoteTurn(
    msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True, forbid_unknown_fields=False
):
    from_gateway: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    agent_id: _Short
    session: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]  # the caller's session key
    turn_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    text: _Text
    stream: bool = True
    # agent-to-agent (`sessions_spawn` / `sessions_send` of `agent@gateway`): the calling agent
    # of `from_gateway`; the serving side's tools.agentToAgent must allow `<fromAgent>@<fromGateway>`.
    # Empty for an ordinary proxied turn (`runnerType: openclawx`), which that key does not govern.
    from_agent: Annotated[str, msgspec.Meta(pattern=r"^([a-z0-9][a-z0-9_-]{0,63})?$")] = ""
    kind: Literal["turn", "spawn", "send"] = "turn"
    probe: bool = False  # only the checks: answered by an empty RemoteFinal or the refusal
    # the serving side sends `RemoteAlive` this often while the turn runs, so that a caller
    # tells a long quiet turn from a region that dropped (0: never)
    keepalive: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0
    # the caller asked for this turn before (its runner died, or handed the turn back): the
    # serving side answers from the outcome it kept for `turn_id` (a day), if any, instead of
    # submitting the turn again
    again: bool = False


class RemoteStop(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=False):
    """The caller stopped (or gave up on) a remote turn: the serving gateway stops the running
    turn of the session it keeps for `session` (published on `<prefix>.gw.<region>.stop.<agent>`)."""

    from_gateway: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    agent_id: _Short
    session: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RemoteDelta(msgspec.Struct, tag="delta", tag_field="type", kw_only=True, rename="camel"):
    text: str


class RemoteFinal(
    msgspec.Struct, tag="final", tag_field="type", kw_only=True, rename="camel", omit_defaults=True
):
    text: str
    gateway: str = ""
    session_key: str = ""
    model: str = ""


class RemoteError(
    msgspec.Struct, tag="error", tag_field="type", kw_only=True, rename="camel", omit_defaults=True
):
    code: str
    message: str
    hint: str = ""
    failover: bool = False  # the serving side is down or overloaded: another agent may answer


class RemoteAlive(msgspec.Struct, tag="alive", tag_field="type", kw_only=True, rename="camel"):
    pass


RemoteEvent = RemoteDelta | RemoteFinal | RemoteError | RemoteAlive
_EVENT_DECODER: Final = msgspec.json.Decoder(RemoteEvent)


class RemoteTurnFailed(Exception):
    def __init__(self, code: str, message: str, *, failover: bool, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.failover = failover
        self.hint = hint


def remote_turn_subject(prefix: str, region: str, agent_id: str) -> str:
    return gateway_subject(prefix, region, f"turn.{encode_token(agent_id)}")


def remote_stop_subject(prefix: str, region: str, agent_id: str) -> str:
    return gateway_subject(prefix, region, f"stop.{encode_token(agent_id)}")


def remote_node_subject(prefix: str, region: str, node_id: str) -> str:
    """A node of another region, when that region exposes it: `<prefix>.gw.<region>.node.<node>.invoke`."""
    return gateway_subject(prefix, region, f"node.{encode_token(node_id)}.invoke")


def remote_session_key(agent_id: str, from_gateway: str, session: str) -> str:
    digest = hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"agent:{agent_id}:gw:{from_gateway}:{digest}"


# Until the serving region first answers, how often its silence is looked up (`silence`).
SILENCE_CHECK_SECONDS: Final = 1.0
# The serving gateway's first keep-alive of a turn still running by then: well before the
# caller's first lookup, so a live region is heard whatever its catalogue says.
FIRST_ALIVE_SECONDS: Final = SILENCE_CHECK_SECONDS / 4


async def remote_turn(
    nc: Client,
    prefix: str,
    region: str,
    turn: RemoteTurn,
    on_delta: Callable[[str], Awaitable[None]],
    *,
    idle_timeout: float,
    silence: Callable[[], Awaitable[float | None]] | None = None,
) -> RemoteFinal:
    """Run `turn` on `region`'s gateway; deltas go to `on_delta`. Raises `RemoteTurnFailed`
    (with `failover` when the region is unreachable or answered nothing in `idle_timeout`:
    with `turn.keepalive`, a few keep-alive periods tell a dropped region from a quiet turn).
    `silence`: how long the region has not been heard from when it is gone (`region_silence`),
    asked every `SILENCE_CHECK_SECONDS` until the region first answers: over a leaf link a gone
    region gets no "no responders", and without it the turn would wait `idle_timeout`."""
    loop = asyncio.get_running_loop()
    inbox = nc.new_inbox()
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def _collect(msg: Msg) -> None:
        queue.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=_collect)
    try:
        await nc.publish(
            remote_turn_subject(prefix, region, turn.agent_id), msgspec.json.encode(turn), reply=inbox
        )
        await nc.flush()
        heard = False
        deadline = loop.time() + idle_timeout
        while True:
            wait = deadline - loop.time()
            if not heard and silence is not None:
                wait = min(wait, SILENCE_CHECK_SECONDS)
            try:
                msg = await asyncio.wait_for(queue.get(), max(wait, 0.0))
            except TimeoutError:
                if loop.time() >= deadline:
                    raise RemoteTurnFailed(
                        "GATEWAY_UNREACHABLE",
                        f"gateway {region!r} did not answer within {idle_timeout:g}s",
                        failover=True,
                        hint="check that the region is up and federated (`clawmesh status` there)",
                    ) from None
                await _unless_silent(region, silence)
                continue
            heard = True
            deadline = loop.time() + idle_timeout
            if msg.headers and msg.headers.get("Status") == "503":  # no responders
                raise RemoteTurnFailed(
                    "GATEWAY_UNREACHABLE",
                    f"no gateway {region!r} is reachable in the federation",
                    failover=True,
                    hint="check the region name and that its gateway runs with --federate",
                )
            try:
                event = _EVENT_DECODER.decode(msg.data)
            except msgspec.ValidationError as exc:
                raise RemoteTurnFailed(
                    "BAD_REMOTE_REPLY", f"gateway {region!r} sent an unreadable reply: {exc}", failover=False
                ) from None
            if isinstance(event, RemoteDelta):
                await on_delta(event.text)
            elif isinstance(event, RemoteFinal):
                return event
            elif isinstance(event, RemoteError):
                raise RemoteTurnFailed(event.code, event.message, failover=event.failover, hint=event.hint)
    finally:
        await sub.unsubscribe()


async def _unless_silent(region: str, silence: Callable[[], Awaitable[float | None]] | None) -> None:
    """RemoteTurnFailed (failover) when `region` is known to be gone; a failed lookup says nothing."""
    if silence is None:
        return
    try:
        silent = await silence()
    except Exception:
        return
    if silent is not None:
        raise RemoteTurnFailed(
            "GATEWAY_UNREACHABLE",
            f"gateway {region!r} has not been heard from for {silent:.0f}s",
            failover=True,
            hint="its gateway or its link to the hub is down (`clawmesh status` there)",
        )

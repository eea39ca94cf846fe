"""Subjects (contract, see docs/subjects.md) and the encoding of ids inside them.

No user-controlled string may put `.`, `*`, `>` or whitespace into a subject. Ids made only of
`[a-z0-9_-]` are used as they are; anything else is escaped reversibly: each other byte of its
UTF-8 form becomes `=XX` (lower-case hex). `=` is legal in NATS subjects *and* in JetStream KV
keys, so the same token also works as a KV key. An empty id is `=`.

Every token is at most `MAX_TOKEN_LENGTH` characters, whatever the id: nats-server closes the
connection on a control line (PUB/SUB/HPUB with the subject) longer than 4096 bytes. A longer
encoding is shortened to a readable prefix of it, `==`, and a hash of the whole id (not
reversible; no reversible token contains `==`, so the two kinds never collide).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final

from ._messages import InboundMessage, inbound_key

__all__ = ["MAX_TOKEN_LENGTH", "Subjects", "decode_token", "encode_token"]

MAX_TOKEN_LENGTH: Final = 160
_HASH_HEX: Final = 32  # 128 bits of blake2b
_PREFIX: Final = MAX_TOKEN_LENGTH - 2 - _HASH_HEX
_PLAIN: Final = re.compile(r"^[a-z0-9_-]+$")
_SAFE: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN: Final = re.compile(r"^(?:[a-z0-9_-]|=[0-9a-f]{2})+$|^=$")


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")  # a lone surrogate from JSON is still an id


@lru_cache(maxsize=8192)  # a few ids (agents, sessions, channels) are encoded for every message
def encode_token(value: str) -> str:
    """One subject token of at most `MAX_TOKEN_LENGTH` characters for an arbitrary id
    (reversible unless it had to be shortened; see module docstring)."""
    if len(value) <= MAX_TOKEN_LENGTH and _PLAIN.match(value):
        return value
    if not value:
        return "="
    raw = _utf8(value)
    if len(raw) <= MAX_TOKEN_LENGTH:  # else the escaped form is longer than the bound anyway
        token = "".join(chr(b) if b in _SAFE else f"={b:02x}" for b in raw)
        if len(token) <= MAX_TOKEN_LENGTH:
            return token
    prefix, size = [], 0
    for b in raw:
        part = chr(b) if b in _SAFE else f"={b:02x}"
        if size + len(part) > _PREFIX:
            break
        prefix.append(part)
        size += len(part)
    digest = hashlib.blake2b(raw, digest_size=_HASH_HEX // 2).hexdigest()
    return f"{''.join(prefix)}=={digest}"


def decode_token(token: str) -> str:
    """Inverse of `encode_token`; raises ValueError for something it could not have produced,
    and for a shortened token (its id cannot be recovered)."""
    if "==" in token:
        raise ValueError(f"a shortened subject token cannot be decoded: {token[:40]!r}…")
    if not _TOKEN.match(token):
        raise ValueError(f"not an encoded subject token: {token!r}")
    if token == "=":
        return ""
    if "=" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(token[i]))
            i += 1
    return raw.decode("utf-8", "surrogatepass")


class Subjects:
    """Subject builders for one deployment prefix (`nats.subjectPrefix`, default `cm`)."""

    __slots__ = ("keyed_inbound", "prefix", "stream_prefix")

    def __init__(self, prefix: str = "cm", *, keyed_inbound: bool = False) -> None:
        if not re.match(r"^[A-Za-z0-9_-]+$", prefix):
            raise ValueError(f"subject prefix must be one token of [A-Za-z0-9_-], got {prefix!r}")
        self.prefix = prefix
        self.stream_prefix = prefix.upper().replace("-", "_")
        # partitioned routers (`runtime.routerPartitions` > 1): inbound subjects carry the key
        self.keyed_inbound = keyed_inbound

    # streams and buckets -----------------------------------------------------------------
    def stream(self, name: str) -> str:
        """Stream name, e.g. `CM_INBOUND` for prefix `cm`."""
        return f"{self.stream_prefix}_{name}"

    def bucket(self, name: str) -> str:
        """KV bucket name, e.g. `cm_sessions`."""
        return f"{self.prefix}_{name}"

    # inbound / turns / outbound ------------------------------------------------------------
    def inbound(self, channel: str, account: str, key: str | None = None) -> str:
        """`cm.in.<channel>.<account>`, or with partitioned routers `cm.in.<channel>.<account>.<key>`
        (`key`: what decides the session besides channel and account, `inbound_key`), which
        CM_INBOUND stores as `cm.in.p.<partition>.<channel>.<account>.<key>`."""
        base = f"{self.prefix}.in.{encode_token(channel)}.{encode_token(account)}"
        return base if key is None else f"{base}.{encode_token(key)}"

    def inbound_of(self, msg: InboundMessage) -> str:
        """Where `msg` is published in CM_INBOUND (keyed when the routers are partitioned)."""
        return self.inbound(msg.channel, msg.account_id, inbound_key(msg) if self.keyed_inbound else None)

    @property
    def inbound_all(self) -> str:
        return f"{self.prefix}.in.>"

    def inbound_transform(self, partitions: int) -> tuple[str, str]:
        """CM_INBOUND's subject transform (source, destination) for `partitions` > 1: NATS's own
        `partition()` mapping, a stable hash of channel, account and key, applied by the server
        as it stores a message. Its destination has more tokens than the source, so a stored
        subject is never mapped twice."""
        p = self.prefix
        return (
            f"{p}.in.*.*.*",
            f"{p}.in.p.{{{{partition({partitions},1,2,3)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}",
        )

    def inbound_partition(self, partition: int) -> list[str]:
        """What partition `partition`'s router consumer reads. Partition 0 also takes the
        messages that were not mapped: the unpartitioned shape (an older publisher, one with
        `routerPartitions` 1) and a keyed one stored before the stream had its transform, so
        no message is left without a router."""
        p = self.prefix
        own = f"{p}.in.p.{partition}.*.*.*"
        return [own, f"{p}.in.*.*", f"{p}.in.*.*.*"] if partition == 0 else [own]

    def turn(self, agent: str) -> str:
        return f"{self.prefix}.turn.{encode_token(agent)}"

    @property
    def turns_all(self) -> str:
        return f"{self.prefix}.turn.>"

    def outbound(self, channel: str, account: str) -> str:
        return f"{self.prefix}.out.{encode_token(channel)}.{encode_token(account)}"

    @property
    def outbound_all(self) -> str:
        return f"{self.prefix}.out.>"

    # events ------------------------------------------------------------------------------
    def events(self, agent: str, session_key: str) -> str:
        return f"{self.prefix}.ev.{encode_token(agent)}.{encode_token(session_key)}"

    def events_of_agent(self, agent: str) -> str:
        return f"{self.prefix}.ev.{encode_token(agent)}.*"

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.ev.>"

    def access_denied(self, channel: str, account: str) -> str:
        """`cm.access.denied.<channel>.<account>`: a message access control dropped."""
        return f"{self.prefix}.access.denied.{encode_token(channel)}.{encode_token(account)}"

    @property
    def access_all(self) -> str:
        return f"{self.prefix}.access.>"

    @property
    def route_decided(self) -> str:
        return f"{self.prefix}.route.decided"

    # sessions (transcripts) -------------------------------------------------------------
    def transcript(self, agent: str, session_key: str) -> str:
        return f"{self.prefix}.tx.{encode_token(agent)}.{encode_token(session_key)}"

    @property
    def transcripts_all(self) -> str:
        return f"{self.prefix}.tx.>"

    # replies to one process (see docs/architecture.md, "reply subjects") ------------------
    # Instance ids are NUIDs (`[A-Za-z0-9]`), always one subject token: used as they are.
    def reply(self, instance: str) -> str:
        """`cm.reply.<instance>`: a turn's decision and events, to the ingress that waits for it."""
        return f"{self.prefix}.reply.{instance}"

    def tool_output(self, instance: str, invocation_id: str) -> str:
        """`cm.reply.<runner>.tool.<id>`: a node's streamed exec output, to the runner that asked."""
        return f"{self.prefix}.reply.{instance}.tool.{encode_token(invocation_id)}"

    @property
    def replies_all(self) -> str:
        return f"{self.prefix}.reply.>"

    # nodes, agent-to-agent, control, dead letters ---------------------------------------
    def node_invoke(self, node: str) -> str:
        return f"{self.prefix}.node.{encode_token(node)}.invoke"

    @property
    def node_invokes_all(self) -> str:
        return f"{self.prefix}.node.*.invoke"

    def tools_invoke(self, agent: str) -> str:
        """`cm.tools.<agent>.invoke`: `POST /tools/invoke`, run by a runner (queue group)."""
        return f"{self.prefix}.tools.{encode_token(agent)}.invoke"

    @property
    def tools_invokes_all(self) -> str:
        return f"{self.prefix}.tools.*.invoke"

    def a2a(self, agent: str) -> str:
        return f"{self.prefix}.a2a.{encode_token(agent)}"

    def a2a_event(self, agent: str, kind: str) -> str:
        """`cm.a2a.<agent>.<kind>`: an agent-to-agent event of `agent` (spawn, announce, send, stop)."""
        return f"{self.prefix}.a2a.{encode_token(agent)}.{kind}"

    @property
    def a2a_all(self) -> str:
        return f"{self.prefix}.a2a.>"

    def agent_protocol(self, verb: str, agent: str) -> str:
        """`agents.<verb>.clawmesh.<prefix>.<agent>`: the Synadia Agent Protocol's subjects of
        one of this deployment's agents (verb `prompt`, `status`, `hb`); the protocol fixes
        the `agents.` root, the deployment's prefix is its `owner` token."""
        return f"agents.{verb}.clawmesh.{self.prefix}.{encode_token(agent)}"

    def agent_protocol_all(self, verb: str) -> str:
        return f"agents.{verb}.clawmesh.{self.prefix}.>"

    def control(self, verb: str) -> str:
        return f"{self.prefix}.ctl.{verb}"

    def status(self, service: str) -> str:
        """`cm.ctl.status.<service>`: every instance of `service` answers with its status."""
        return self.control(f"status.{encode_token(service)}")

    @property
    def stop(self) -> str:
        """`cm.ctl.stop`: a `StopRequest`; every runner cancels that session's running turn."""
        return self.control("stop")

    @property
    def config_reload(self) -> str:
        return self.control("config.reload")

    @property
    def control_all(self) -> str:
        return f"{self.prefix}.ctl.>"

    def dead_letter(self, service: str) -> str:
        return f"{self.prefix}.dlq.{encode_token(service)}"

    @property
    def dead_letters_all(self) -> str:
        return f"{self.prefix}.dlq.>"

    def gateway(self, gateway: str, rest: str) -> str:
        """`cm.gw.<gateway>.<rest>`: a family addressed to another gateway across a leaf link."""
        return f"{self.prefix}.gw.{encode_token(gateway)}.{rest}"

    # JetStream KV ------------------------------------------------------------------------
    def objects(self, bucket: str) -> str:
        """Every subject of object store `bucket` (`$O.cm_media.>`), for permissions."""
        return f"$O.{self.bucket(bucket)}.>"

    def kv(self, bucket: str, key: str = ">") -> str:
        """The subject of `key` in bucket `bucket` (`$KV.cm_nodes.<key>`), e.g. for permissions."""
        return f"$KV.{self.bucket(bucket)}.{key}"

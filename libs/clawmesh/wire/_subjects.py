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

    __slots__ = ("prefix", "stream_prefix")

    def __init__(self, prefix: str = "cm") -> None:
        if not re.match(r"^[A-Za-z0-9_-]+$", prefix):
            raise ValueError(f"subject prefix must be one token of [A-Za-z0-9_-], got {prefix!r}")
        self.prefix = prefix
        self.stream_prefix = prefix.upper().replace("-", "_")

    # streams and buckets -----------------------------------------------------------------
    def stream(self, name: str) -> str:
        """Stream name, e.g. `CM_INBOUND` for prefix `cm`."""
        return f"{self.stream_prefix}_{name}"

    def bucket(self, name: str) -> str:
        """KV bucket name, e.g. `cm_sessions`."""
        return f"{self.prefix}_{name}"

    # inbound / turns / outbound ------------------------------------------------------------
    def inbound(self, channel: str, account: str) -> str:
        return f"{self.prefix}.in.{encode_token(channel)}.{encode_token(account)}"

    @property
    def inbound_all(self) -> str:
        return f"{self.prefix}.in.>"

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

    def a2a(self, agent: str) -> str:
        return f"{self.prefix}.a2a.{encode_token(agent)}"

    @property
    def a2a_all(self) -> str:
        return f"{self.prefix}.a2a.>"

    def control(self, verb: str) -> str:
        return f"{self.prefix}.ctl.{verb}"

    def status(self, service: str) -> str:
        """`cm.ctl.status.<service>`: every instance of `service` answers with its status."""
        return self.control(f"status.{encode_token(service)}")

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
    def kv(self, bucket: str, key: str = ">") -> str:
        """The subject of `key` in bucket `bucket` (`$KV.cm_nodes.<key>`), e.g. for permissions."""
        return f"$KV.{self.bucket(bucket)}.{key}"

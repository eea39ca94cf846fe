"""What users received, read back after the run, and what is wrong with it.

Only user-visible sources are read: the HTTP answers the load recorded (`Sent`), the replies
stored in `CM_OUTBOUND` (what a channel adapter delivers; read with the admin user) and the
session transcripts (`SessionStore.history`, what `clawmesh sessions history --json` prints).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from clawmesh.sessions import SessionStore, TxUser
from clawmesh.wire import OutboundMessage, Subjects, decode
from clawmesh_ingress.turns import turn_id_for  # message id → turn id, as the ingress maps it

from .load import Sent, session_key

__all__ = ["Reply", "Report", "check", "read_outbound", "read_stream", "read_transcripts"]


@dataclass(frozen=True)
class Reply:
    seq: int  # stream sequence: the order the channel delivers them in
    turn_id: str
    session_key: str
    text: str
    ts: float
    is_error: bool


async def read_stream(js: JetStreamContext, subject: str, timeout: float = 10.0) -> list[Msg]:
    """Every message stored under `subject`, in stream order (an ordered consumer from the
    start, read up to the stream's last message)."""
    info = await js.stream_info(await js.find_stream_name_by_subject(subject))
    if info.state.messages == 0:
        return []
    last = info.state.last_seq
    out: list[Msg] = []
    sub = await js.subscribe(subject, ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout)
            except TimeoutError:
                return out  # the filter's last message is older than the stream's last
            out.append(msg)
            if msg.metadata.sequence.stream >= last:
                return out
    finally:
        await sub.unsubscribe()


async def read_outbound(js: JetStreamContext, timeout: float = 10.0) -> list[Reply]:
    """Every reply in CM_OUTBOUND, in stream order."""
    out = []
    for msg in await read_stream(js, "cm.out.>", timeout):
        o = decode(msg.data, OutboundMessage)
        out.append(Reply(msg.metadata.sequence.stream, o.turn_id, o.session_key, o.text, o.ts, o.is_error))
    return out


async def read_transcripts(js: JetStreamContext, peers: Sequence[str]) -> dict[str, list[TxUser]]:
    """The user entries of each session's transcript, in transcript order."""
    store = SessionStore(js, Subjects(), await js.key_value("cm_sessions"))
    out: dict[str, list[TxUser]] = {}
    for peer in peers:
        history = await store.history("main", session_key(peer))
        out[peer] = [e for e in history if isinstance(e, TxUser)]
    return out


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _inversions(ns: Sequence[int]) -> int:
    """Replies that came after a reply to a later message of the same session."""
    seen = -1
    count = 0
    for n in ns:
        if n < seen:
            count += 1
        seen = max(seen, n)
    return count


@dataclass
class Report:
    sent: int = 0
    accepted: int = 0
    answered: int = 0
    error_replies: int = 0
    lost: list[str] = field(default_factory=list)  # message ids accepted and never answered
    duplicated: list[str] = field(default_factory=list)  # message ids answered more than once
    wrong_text: list[str] = field(default_factory=list)
    unknown_replies: int = 0  # replies to no message of this run
    misordered_sessions: dict[str, list[int]] = field(default_factory=dict)  # peer → n in reply order
    misordered_replies: int = 0
    refused: list[str] = field(default_factory=list)  # not accepted within the retry window
    rejected: list[str] = field(default_factory=list)  # a 4xx answer (not retried)
    retried: int = 0  # accepted after at least one failed attempt
    transcript_missing: list[str] = field(default_factory=list)
    transcript_duplicated: list[str] = field(default_factory=list)
    transcript_misordered: list[str] = field(default_factory=list)
    # peer → (message n, session seq) in seq order, when the router numbered turns out of order
    sequenced_out_of_order: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    longest_wait: float = 0.0  # the longest a user retried one message before it was accepted
    longest_wait_message: str = ""
    # accepted, but only after the user retried longer than a naive client would (issue 18's
    # 5 × 0.5 s) or than a leader election should take
    waited_over_2_5s: int = 0
    waited_over_10s: int = 0
    longest_gap: float = 0.0  # the longest time no message at all was accepted
    latency_warm: list[float] = field(default_factory=list)
    latency_chaos: list[float] = field(default_factory=list)

    def numbering_inversions(self) -> dict[str, list[list[tuple[int, int]]]]:
        """Per session, each place the numbering goes back: (message n, seq) around it."""
        out: dict[str, list[list[tuple[int, int]]]] = {}
        for peer, pairs in self.sequenced_out_of_order.items():
            seen = -1
            for i, (n, _) in enumerate(pairs):
                if n < seen:
                    out.setdefault(peer, []).append(pairs[max(0, i - 3) : i + 2])
                seen = max(seen, n)
        return out

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.wrong_text
            or self.misordered_sessions
            or self.refused
            or self.rejected
            or self.transcript_missing
            or self.transcript_duplicated
            or self.transcript_misordered
        )

    def summary(self) -> dict[str, Any]:
        def p(values: list[float], q: float) -> float | None:
            v = _percentile(values, q)
            return None if v is None else round(v, 3)

        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "answered": self.answered,
            "error_replies": self.error_replies,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "wrong_text": len(self.wrong_text),
            "unknown_replies": self.unknown_replies,
            "misordered_sessions": len(self.misordered_sessions),
            "misordered_replies": self.misordered_replies,
            "refused_beyond_window": len(self.refused),
            "rejected_4xx": len(self.rejected),
            "accepted_after_retry": self.retried,
            "transcript_missing": len(self.transcript_missing),
            "transcript_duplicated": len(self.transcript_duplicated),
            "transcript_misordered": len(self.transcript_misordered),
            "sessions_sequenced_out_of_order": len(self.sequenced_out_of_order),
            "longest_accept_s": round(self.longest_wait, 2),
            "longest_wait_message": self.longest_wait_message,
            "accepted_after_over_2.5s": self.waited_over_2_5s,
            "accepted_after_over_10s": self.waited_over_10s,
            "longest_gap_without_acceptance_s": round(self.longest_gap, 2),
            "latency_warmup": {
                "n": len(self.latency_warm),
                "p50": p(self.latency_warm, 0.5),
                "p99": p(self.latency_warm, 0.99),
            },
            "latency_chaos": {
                "n": len(self.latency_chaos),
                "p50": p(self.latency_chaos, 0.5),
                "p99": p(self.latency_chaos, 0.99),
            },
        }

    def details(self, limit: int = 10) -> dict[str, Any]:
        return {
            "lost": self.lost[:limit],
            "duplicated": self.duplicated[:limit],
            "wrong_text": self.wrong_text[:limit],
            "misordered": {k: v for k, v in list(self.misordered_sessions.items())[:limit]},
            "refused": self.refused[:limit],
            "rejected": self.rejected[:limit],
            "transcript_missing": self.transcript_missing[:limit],
            "transcript_duplicated": self.transcript_duplicated[:limit],
            "transcript_misordered": self.transcript_misordered[:limit],
            "sequenced_out_of_order": dict(list(self.numbering_inversions().items())[:limit]),
        }


def check(
    sent: Sequence[Sent],
    replies: Sequence[Reply],
    transcripts: dict[str, list[TxUser]],
    *,
    chaos_start: float,
    chaos_end: float,
) -> Report:
    """Compare what was accepted with what came back. `chaos_start`/`chaos_end` (wall clock)
    split the latencies into the fault-free warm-up and the chaos phase."""
    r = Report(sent=len(sent))
    by_turn: dict[str, Sent] = {}
    for m in sent:
        by_turn[m.turn_id or turn_id_for("api", "default", m.message_id)] = m
    replies_of: dict[str, list[Reply]] = defaultdict(list)
    for reply in replies:
        if reply.turn_id in by_turn:
            replies_of[reply.turn_id].append(reply)
        else:
            r.unknown_replies += 1
    order: dict[str, list[int]] = defaultdict(list)
    for reply in sorted(replies, key=lambda x: x.seq):
        if (owner := by_turn.get(reply.turn_id)) is not None:
            order[owner.peer].append(owner.n)
    for turn_id, m in by_turn.items():
        got = replies_of.get(turn_id, [])
        if m.rejected:
            r.rejected.append(f"{m.message_id}: {m.rejected}")
        elif not m.accepted:
            r.refused.append(
                f"{m.message_id} after {m.attempts} attempts: {m.failures[-1] if m.failures else ''}"
            )
        if not m.accepted:
            continue
        r.accepted += 1
        if m.failures:
            r.retried += 1
        r.waited_over_2_5s += m.waited > 2.5
        r.waited_over_10s += m.waited > 10
        if m.waited > r.longest_wait:
            r.longest_wait, r.longest_wait_message = m.waited, m.message_id
        if not got:
            r.lost.append(m.message_id)
            continue
        r.answered += 1
        if len(got) > 1:
            r.duplicated.append(f"{m.message_id} ×{len(got)}")
        first = got[0]
        if first.is_error:
            r.error_replies += 1
        elif first.text != f"echo: {m.text}":
            r.wrong_text.append(f"{m.message_id}: {first.text[:80]!r}")
        latency = first.ts - m.first_sent
        if m.first_sent < chaos_start:
            r.latency_warm.append(latency)
        elif m.first_sent < chaos_end:
            r.latency_chaos.append(latency)
    for peer, ns in order.items():
        bad = _inversions(ns)
        if bad:
            r.misordered_sessions[peer] = ns
            r.misordered_replies += bad
    accepted_texts: dict[str, list[str]] = defaultdict(list)
    for m in sent:
        if m.accepted:
            accepted_texts[m.peer].append(m.text)
    index = {m.text: m.n for m in sent}
    for peer, texts in accepted_texts.items():
        got_texts = [e.text for e in transcripts.get(peer, [])]
        counts = Counter(got_texts)
        r.transcript_missing += [t for t in texts if counts[t] == 0]
        r.transcript_duplicated += [t for t, c in counts.items() if c > 1]
        if _inversions([index[t] for t in got_texts if t in index]):
            r.transcript_misordered.append(peer)
        # The session sequence numbers the router gave the turns, in message order: if they
        # are out of order, the turns were numbered wrongly (not run or replied in a wrong order).
        by_seq = sorted((e.seq, index[e.text]) for e in transcripts.get(peer, []) if e.text in index)
        if _inversions([n for _, n in by_seq]):
            r.sequenced_out_of_order[peer] = [(n, seq) for seq, n in by_seq]
    accepted_times = sorted(m.accepted_at for m in sent if m.accepted_at is not None)
    if accepted_times:
        starts = sorted(m.first_sent for m in sent)
        edges = [starts[0], *accepted_times]
        r.longest_gap = max(b - a for a, b in itertools.pairwise(edges)) if len(edges) > 1 else 0.0
    return r

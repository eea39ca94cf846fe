"""Bus plumbing against a real nats-server: provisioning, subjects with hostile ids, tracing."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from clawmesh.bus import Layout, NatsServer, inject, provision
from clawmesh.config import NatsSettings
from clawmesh.wire import Subjects, decode_token, encode_token

HOSTILE = [
    "a.b",
    "*",
    ">",
    "a b",
    "tab\there",
    "agent:main:direct:Bob",
    "ÄÖÜ",
    "",
    "=",
    "x=41",
    "..",
    "a>b.*",
    "\n",
]


async def test_provision_is_idempotent(nc: Client) -> None:
    js = nc.jetstream()
    layout = Layout()
    first = await provision(js, layout)
    second = await provision(js, layout)
    assert (
        set(first)
        == set(second)
        == {
            "sessions",
            "leases",
            "turns",
            "nodes",
            "approvals",
            "pairing",
            "channels",
            "delivered",
            "gateways",
        }
    )
    names = {s.config.name for s in await js.streams_info() if not s.config.name.startswith("KV_")}
    assert names == {"CM_INBOUND", "CM_TURNS", "CM_OUTBOUND", "CM_SESSIONS", "CM_DLQ", "OBJ_cm_media"}
    turns = await js.stream_info("CM_TURNS")
    assert turns.config.retention == "workqueue"
    # chat files: kept a day, bounded, and a full store refuses new files (never drops old ones
    # a queued turn still needs)
    media = (await js.stream_info("OBJ_cm_media")).config
    assert (media.max_age, media.max_bytes, media.discard) == (86_400.0, 256 * 2**20, "new")


async def test_custom_prefix_and_replicas_layout(nc: Client) -> None:
    layout = Layout(subjects=Subjects("acme"))
    await provision(nc.jetstream(), layout)
    info = await nc.jetstream().stream_info("ACME_INBOUND")
    assert info.config.subjects == ["acme.in.>"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_cannot_change_subject_shape(hostile: str) -> None:
    s = Subjects()
    subject = s.events(hostile, hostile)
    tokens = subject.split(".")
    assert len(tokens) == 4 and tokens[:2] == ["cm", "ev"]
    for token in tokens:
        assert token and not any(c in token for c in "*> \t\r\n")
    assert decode_token(tokens[2]) == hostile and decode_token(tokens[3]) == hostile
    assert encode_token(hostile) == tokens[2]


async def test_hostile_ids_deliver_only_to_their_own_subscriber(nc: Client) -> None:
    """A wildcard-looking id must not reach other sessions' subscribers."""
    s = Subjects()
    got: dict[str, list[bytes]] = {h: [] for h in HOSTILE}
    done = asyncio.Event()
    for h in HOSTILE:

        async def cb(msg, h=h) -> None:  # type: ignore[no-untyped-def]
            got[h].append(msg.data)

        await nc.subscribe(s.events("main", h), cb=cb)
    for h in HOSTILE:
        await nc.publish(s.events("main", h), h.encode())
    await nc.flush()

    # a sentinel after everything: once it arrives, everything before it has been delivered
    async def on_sentinel(_msg) -> None:  # type: ignore[no-untyped-def]
        done.set()

    sentinel = await nc.subscribe("sentinel", cb=on_sentinel)
    await nc.publish("sentinel", b"")
    await asyncio.wait_for(done.wait(), 5)
    await sentinel.unsubscribe()
    for h in HOSTILE:
        assert got[h] == [h.encode()]


async def test_provision_turns_on_direct_gets_for_single_replica_buckets(nc: Client) -> None:
    """Buckets made by an older version (no direct gets) are updated in place, data kept."""
    from nats.js.api import KeyValueConfig

    js = nc.jetstream()
    layout = Layout()
    old = await js.create_key_value(KeyValueConfig(bucket=layout.subjects.bucket("sessions")))
    await old.put("s.kept", b"1")
    buckets = await provision(js, layout)
    for spec in layout.buckets():
        info = await js.stream_info(f"KV_{layout.subjects.bucket(spec.name)}")
        assert info.config.allow_direct is True, spec.name
    assert (await buckets["sessions"].get("s.kept")).value == b"1"


async def test_streams_without_a_natural_end_are_bounded_in_size(nc: Client) -> None:
    js = nc.jetstream()
    await provision(js, Layout())
    config = NatsSettings()
    for name, bound in [
        ("CM_INBOUND", config.inbound_max_bytes),
        ("CM_SESSIONS", config.sessions_max_bytes),
        ("CM_DLQ", config.dead_letters_max_bytes),
    ]:
        info = await js.stream_info(name)
        assert info.config.max_bytes == bound > 0, name
        assert info.config.discard == "old", name  # the oldest go, new messages are never refused


async def test_provision_bounds_existing_streams_in_place(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams made by an older version (no size bound) get the configured bound, data kept;
    provisioning again with the same bounds changes nothing, and a new bound is applied."""
    from nats.js.api import StreamConfig

    js = nc.jetstream()
    layout = Layout()
    await js.add_stream(StreamConfig(name="CM_SESSIONS", subjects=["cm.tx.>"], allow_direct=True))
    await js.publish("cm.tx.main.s1", b"kept")
    bounded = Layout(sessions_max_bytes=50 * 2**20, inbound_max_bytes=20 * 2**20, media_max_bytes=30 * 2**20)
    await provision(js, bounded)
    assert (await js.stream_info("CM_SESSIONS")).config.max_bytes == 50 * 2**20
    assert (await js.stream_info("CM_INBOUND")).config.max_bytes == 20 * 2**20
    assert (await js.stream_info("OBJ_cm_media")).config.max_bytes == 30 * 2**20
    assert (await js.get_last_msg("CM_SESSIONS", "cm.tx.main.s1")).data == b"kept"

    updates: list[str] = []
    real_update = js.update_stream

    async def counted(config: StreamConfig | None = None, **params: object) -> object:
        updates.append(config.name if config else "?")
        return await real_update(config, **params)  # type: ignore[arg-type]

    monkeypatch.setattr(js, "update_stream", counted)
    await provision(js, bounded)
    assert updates == []
    await provision(js, layout)
    assert sorted(updates) == ["CM_INBOUND", "CM_SESSIONS", "OBJ_cm_media"]
    assert (await js.stream_info("CM_SESSIONS")).config.max_bytes == NatsSettings().sessions_max_bytes


_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_CALLER = {"traceparent": f"00-{_TRACE_ID}-00f067aa0ba902b7-01"}


async def test_trace_context_travels_in_headers_without_a_tracer(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no tracer provider installed (the default), a caller's trace id still crosses NATS:
    the producer puts it in the headers and whatever the consumer publishes next carries it on."""
    from opentelemetry import trace

    from clawmesh.bus import consumer_span, producer_span

    # another test in this process may have installed a provider: take it away for this one
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        received.set_result(dict(msg.headers or {}))

    await nc.subscribe("traced", cb=handler)
    headers: dict[str, str] = {}
    with producer_span("traced", "traced", headers, parent=_CALLER):
        await nc.publish("traced", b"x", headers=headers)
    got = await asyncio.wait_for(received, 10)
    assert got["traceparent"].split("-")[1] == _TRACE_ID
    with consumer_span("traced", "traced", got) as span:
        assert format(span.get_span_context().trace_id, "032x") == _TRACE_ID
        onward = inject({})
    assert onward["traceparent"].split("-")[1] == _TRACE_ID
    # outside the consumer span the caller's context is gone again
    assert "traceparent" not in inject({})
    # no trace context in, none out
    with consumer_span("traced", "traced", {}) as span:
        assert not span.get_span_context().is_valid
        assert "traceparent" not in inject({})


_RECORDING_SCRIPT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from clawmesh.bus import consumer_span, producer_span

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
caller = {"traceparent": "00-@TRACE@-00f067aa0ba902b7-01"}
headers = {}
with producer_span("turn", "cm.turn.a", headers, parent=caller):
    pass
with consumer_span("turn", "cm.turn.a", headers):
    pass
produced, consumed = exporter.get_finished_spans()
assert produced.kind is SpanKind.PRODUCER and consumed.kind is SpanKind.CONSUMER, (produced, consumed)
assert format(produced.context.trace_id, "032x") == "@TRACE@"
assert produced.parent.span_id == 0x00F067AA0BA902B7
assert consumed.context.trace_id == produced.context.trace_id
assert consumed.parent.span_id == produced.context.span_id
assert headers["traceparent"].split("-")[2] == format(produced.context.span_id, "016x")
print("linked")
""".replace("@TRACE@", _TRACE_ID)


def test_spans_link_producer_and_consumer_with_a_tracer() -> None:
    """With a tracer provider, the consumer's span is the child of the producer's span, which is
    the child of the caller's. A separate interpreter: a tracer provider can be installed only
    once per process and would make every later test record spans."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _RECORDING_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "linked"


async def test_embedded_server_restart_keeps_jetstream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import nats as natspy

    store = tmp_path / "js"
    async with NatsServer(store_dir=store, work_dir=tmp_path) as server:
        client = await natspy.connect(server.url)
        await provision(client.jetstream(), Layout())
        await client.jetstream().publish("cm.in.api.default", b"kept")
        await client.close()
    async with NatsServer(store_dir=store, work_dir=tmp_path) as server:
        client = await natspy.connect(server.url)
        info = await client.jetstream().stream_info("CM_INBOUND")
        assert info.state.messages == 1
        await client.close()

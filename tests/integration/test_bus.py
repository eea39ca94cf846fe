"""Bus plumbing against a real nats-server: provisioning, subjects with hostile ids, tracing."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from clawmesh.bus import Layout, NatsServer, inject, provision
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
    assert set(first) == set(second) == {"sessions", "leases", "turns", "nodes"}
    names = {s.config.name for s in await js.streams_info() if not s.config.name.startswith("KV_")}
    assert names == {"CM_INBOUND", "CM_TURNS", "CM_OUTBOUND", "CM_SESSIONS", "CM_DLQ"}
    turns = await js.stream_info("CM_TURNS")
    assert turns.config.retention == "workqueue"


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


async def test_trace_context_travels_in_headers(nc: Client) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from clawmesh.bus import consumer_span, producer_span

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        received.set_result(dict(msg.headers or {}))

    await nc.subscribe("traced", cb=handler)
    from opentelemetry import trace

    with tracer.start_as_current_span("root") as root:
        headers: dict[str, str] = {}
        inject(headers)
        await nc.publish("traced", b"x", headers=headers)
    got = await asyncio.wait_for(received, 5)
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert got["traceparent"].split("-")[1] == trace_id
    # consumer side: a span whose parent is the producer's context
    old = trace.get_tracer_provider()
    with consumer_span("traced", "traced", got) as span:
        assert format(span.get_span_context().trace_id, "032x") == trace_id or not span.is_recording()
    assert old is trace.get_tracer_provider()
    _ = producer_span  # exported API


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

"""What every service process shares: a NATS connection, JetStream, `$SRV` discovery, config
reload, dead letters, and a bounded drain on SIGTERM.

A service is a class with `name`, `async start()`, `async stop(timeout)` and `status() -> dict`,
built from its `ServiceContext` by a factory (the class itself, or one with the service's own
options bound: see clawmesh_gateway). `run_services` hosts one (a container) or several
(`clawmesh up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import msgspec
import nats.micro
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from nats.micro.request import Request

from .. import __version__
from ..config import ConfigHolder, secret_value
from ..errors import best_effort
from ..safetext import one_line
from ..sessions import SessionStore
from ..wire import DeadLetter, ErrorCode, Subjects, encode_json, encode_msgpack
from ._connect import connect
from ._lease import Leases
from ._process import ConnectionClosedForGood, ProcessHealth, watch_connections
from ._provision import Layout, bind_buckets, provision
from ._publish import publish_retrying
from ._pull import wait_for_stop
from ._trace import inject

__all__ = [
    "Service",
    "ServiceContext",
    "ServiceFactory",
    "layout_for",
    "nats_settings",
    "open_context",
    "run_services",
]

log = logging.getLogger("clawmesh.service")


@dataclass
class ServiceContext:
    """Everything a service needs from its process."""

    service: str
    instance: str
    holder: ConfigHolder
    nc: Client
    js: JetStreamContext
    kv: dict[str, KeyValue]  # handles on the buckets of `Layout.buckets()`, by name
    layout: Layout
    sessions: SessionStore  # one per connection: its completion-record cache is shared by the service
    leases: Leases
    counters: Counter[str] = field(default_factory=Counter)
    # shared by the services of one process (run_services): /readyz reports all of them
    health: ProcessHealth = field(default_factory=ProcessHealth)
    _micro: Any = None

    @property
    def subjects(self) -> Subjects:
        return self.layout.subjects

    @property
    def approvals(self) -> KeyValue:
        """Exec approval requests (`cm_approvals`): node-agents create them, operators decide."""
        return self.kv["approvals"]

    @property
    def presence(self) -> KeyValue:
        """The node presence bucket (`cm_nodes`): node-agents write it, runners place tools by it."""
        return self.kv["nodes"]

    def publish_window(self) -> float:
        """How long a stream publish is retried across a leader change (`runtime.publishRetrySeconds`)."""
        return self.holder.current.settings.runtime.publish_retry

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
        """Store a message in its stream, retried with the same `Nats-Msg-Id` (which `headers`
        must carry) for `publish_window()` seconds while a leader change makes it fail."""
        return await publish_retrying(
            self.js, subject, data, headers, within=self.publish_window(), counters=self.counters
        )

    async def pull_consumer(
        self,
        subject: str | list[str],
        stream: str,
        durable: str,
        *,
        max_ack_pending: int,
        from_start: bool = True,
        start_seq: int | None = None,
    ) -> Any:
        """The durable pull consumer replicas of a service share: explicit acks, redelivery
        after one lease (`runtime.turnLeaseSeconds`) without an ack or progress, and no
        JetStream bound on deliveries: JetStream counts a message handed back untried (a router
        letting its partition go, a replica stopping) as a delivery too, and drops a message
        that reaches its bound without telling anyone, so the services count tries themselves
        (`give_up`). A consumer made with a bound by an earlier version loses it here.
        `subject`: its filter, or several.
        `from_start=False`: a consumer created now takes only messages stored from now on;
        `start_seq`: from that stream sequence on (an existing one keeps its place either way)."""
        filters = [subject] if isinstance(subject, str) else subject
        if start_seq is not None:
            policy, start = DeliverPolicy.BY_START_SEQUENCE, start_seq
        else:
            policy, start = (DeliverPolicy.ALL if from_start else DeliverPolicy.NEW), None
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=policy,
            opt_start_seq=start,
            ack_wait=self.layout.lease_seconds,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subjects=filters if len(filters) > 1 else None,
        )
        psub = await self.js.pull_subscribe(
            filters[0] if len(filters) == 1 else "", durable=durable, stream=stream, config=config
        )
        # nats-py takes an existing durable as it is
        info = await psub.consumer_info()
        if (info.config.max_deliver or -1) > 0:
            config.filter_subject = info.config.filter_subject
            config.filter_subjects = info.config.filter_subjects
            config.deliver_policy, config.opt_start_seq = (
                info.config.deliver_policy,
                info.config.opt_start_seq,
            )
            await self.js.add_consumer(stream, config)  # an update: same name, an editable field
            log.info("%s: consumer %s no longer bounds deliveries", self.service, durable)
        return psub

    async def _count_try(self, msg: Msg) -> int:
        """This delivery's try of `msg`: 1 for a first delivery (nothing written), else one
        more than the tries counted for it in KV `turns` (key `try.<stream>.<seq>`, gone after
        the bucket's day), written before the try so that one crashing its process counts."""
        if (msg.metadata.num_delivered or 1) <= 1:
            return 1
        kv = self.kv["turns"]
        key = f"try.{msg.metadata.stream}.{msg.metadata.sequence.stream}"
        try:
            entry = await kv.get(key)
            before = int(entry.value or b"1")
        except KeyNotFoundError:
            before = 1  # the first delivery was tried (a hand-back before any try is rare)
        await kv.put(key, str(before + 1).encode())
        return before + 1

    async def give_up(self, msg: Msg, tries: int, last_failure: str | None = None) -> bool:
        """Dead-letter and terminate `msg` if it was tried `tries` times already (its handling
        failed, or crashed its process, every time); False: try it. Counted per try, not per
        delivery (`_count_try`): a first delivery costs nothing; a message delivered again
        costs a KV read and write, so call this only for a delivery that will be tried."""
        tried = await self._count_try(msg)
        if tried <= tries:
            return False
        self.counters["delivery_limit"] += 1
        reason = f"not processed in {tried - 1} tries (the limit is {tries})"
        if last_failure:
            reason += f"; last failure: {last_failure}"
        await self.dead_letter(msg.subject, reason, msg.data, msg.headers, code="DELIVERY_LIMIT")
        # term: JetStream stops redelivering it, even to a service that restarts
        with best_effort(self.counters, "term", log=log):
            await msg.term()
        return True

    async def dead_letter(
        self,
        subject: str,
        reason: str,
        payload: bytes,
        headers: dict[str, str] | None,
        *,
        code: ErrorCode = "INVALID_MESSAGE",
    ) -> None:
        """Keep a message we cannot process, with the reason, in the dead-letter stream."""
        self.counters["dead_letters"] += 1
        reason = one_line(reason, _LETTER_REASON_CHARS)
        log.warning("%s: dead-lettering message from %s: %s: %s", self.service, subject, code, reason)
        letter = DeadLetter(
            service=self.service,
            subject=subject,
            reason=reason,
            code=code,
            payload=payload,
            headers=dict(headers or {}),
        )
        data, hdrs = _encode_letter(letter, self.nc.max_payload)
        # the same message dead-lettered for the same reason is one letter: so the publish can be
        # retried across a leader change like every other one
        digest = hashlib.blake2b(subject.encode() + b"\0" + code.encode() + b"\0" + payload, digest_size=16)
        hdrs["Nats-Msg-Id"] = f"dl:{self.service}:{digest.hexdigest()}"
        try:
            await self.publish(self.subjects.dead_letter(self.service), data, inject(hdrs))
        except Exception as exc:  # the DLQ being unavailable must not take the service down
            log.error("%s: could not dead-letter (%s); message was: %r", self.service, exc, payload[:200])


_LETTER_REASON_CHARS = 2000
# what the letter's own headers (dedupe id, trace context, content type) may take of the server's
# maximum message size
_LETTER_HEADROOM = 1024


def _encode_letter(letter: DeadLetter, max_payload: int) -> tuple[bytes, dict[str, str]]:
    """The letter as JSON (readable with `nats stream view`), or, when JSON's base64 would make
    it too large for the server, as msgpack (the payload's bytes as they are). A payload within
    a kilobyte or two of the server's limit still does not fit beside the reason: its start is
    kept, and `payloadSize` says how large it was."""
    room = max_payload - _LETTER_HEADROOM
    data, headers = encode_json(letter)
    if len(data) <= room:
        return data, headers
    data, headers = encode_msgpack(letter)
    over = len(data) - room
    if over > 0:
        whole = letter.payload
        cut = msgspec.structs.replace(
            letter, payload=whole[: max(0, len(whole) - over - 64)], payload_size=len(whole)
        )
        data, headers = encode_msgpack(cut)
    return data, headers


class Service(Protocol):
    name: ClassVar[str]

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    def status(self) -> dict[str, Any]: ...


ServiceFactory = Callable[[ServiceContext], Service]
"""Builds a service from its context: its class, or a partial with the service's options bound."""


def nats_settings(
    holder: ConfigHolder, url_override: str | None = None, credentials: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Connection settings from the config (`nats.*`), with an optional URL override.
    `credentials` (user, password) replace the config's: `clawmesh up` hands each service its
    own user on the embedded server (`natsauth.service_user`)."""
    section = holder.current.document.nats
    env = holder.current.env
    if credentials is not None:
        user, password = credentials
        return {
            "servers": url_override or holder.current.settings.nats.url,
            "user": user,
            "password": password,
            "token": None,
            "creds_file": None,
        }
    return {
        "servers": url_override or holder.current.settings.nats.url,
        "user": secret_value(section.user, env, "$.nats.user") if section else None,
        "password": secret_value(section.password, env, "$.nats.password") if section else None,
        "token": secret_value(section.token, env, "$.nats.token") if section else None,
        "creds_file": section.creds_file if section else None,
    }


def layout_for(holder: ConfigHolder) -> Layout:
    settings = holder.current.settings
    return Layout(
        subjects=Subjects(settings.nats.subject_prefix, keyed_inbound=settings.runtime.router_partitions > 1),
        replicas=settings.nats.replicas,
        lease_seconds=settings.runtime.lease_seconds,
        inbound_max_bytes=settings.nats.inbound_max_bytes,
        sessions_max_bytes=settings.nats.sessions_max_bytes,
        dead_letters_max_bytes=settings.nats.dead_letters_max_bytes,
        media_max_bytes=settings.nats.media_max_bytes,
        router_partitions=settings.runtime.router_partitions,
    )


async def open_context(
    service: str,
    holder: ConfigHolder,
    *,
    url: str | None = None,
    instance: str | None = None,
    provision_streams: bool = True,
    credentials: tuple[str, str] | None = None,
) -> ServiceContext:
    """Connect one service. `provision_streams=False` when another context of this process
    has just provisioned (saves a few dozen JetStream API calls at start-up); `credentials`
    as in `nats_settings`."""
    settings = nats_settings(holder, url, credentials)
    nc = await connect(settings.pop("servers"), name=f"clawmesh-{service}", **settings)
    js = nc.jetstream()
    layout = layout_for(holder)
    kv = await (provision(js, layout) if provision_streams else bind_buckets(js, layout))
    instance = instance or nc._nuid.next().decode()  # nats-py's NUID: unique per process
    counters: Counter[str] = Counter()

    async def publish(subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
        window = holder.current.settings.runtime.publish_retry
        return await publish_retrying(js, subject, data, headers, within=window, counters=counters)

    return ServiceContext(
        service=service,
        instance=instance,
        holder=holder,
        nc=nc,
        js=js,
        kv=kv,
        layout=layout,
        sessions=SessionStore(
            js,
            layout.subjects,
            kv["sessions"],
            kv.get("turns"),
            counters=counters,
            publish=publish,
        ),
        leases=Leases(js, kv["leases"], layout.subjects.bucket("leases"), instance),
        counters=counters,
    )


async def _register_micro(ctx: ServiceContext, svc: Service) -> None:
    """`$SRV.PING|INFO|STATS` discovery, plus `status` and `reload` endpoints every instance answers."""

    def stats_data(_: Any) -> dict[str, Any]:
        return {"counters": dict(ctx.counters), **svc.status()}

    micro = await nats.micro.add_service(
        ctx.nc,
        name=f"clawmesh-{svc.name}",
        version=__version__,
        description=f"clawmesh {svc.name} service",
        metadata={
            "instance": ctx.instance,
            "prefix": ctx.subjects.prefix,
            "config_version": ctx.holder.current.version,
            "pid": str(os.getpid()),
            "host": socket.gethostname(),
        },
        stats_handler=stats_data,
    )

    async def on_status(req: Request) -> None:
        await req.respond(
            json.dumps(
                {"service": svc.name, "instance": ctx.instance, **stats_data(None)}, default=str
            ).encode()
        )

    async def on_reload(req: Request) -> None:
        result = await ctx.holder.reload_async()
        body = {"service": svc.name, "instance": ctx.instance, **result.to_dict()}
        await req.respond(json.dumps(body).encode())

    # A per-instance queue group: every instance answers, not just one of them.
    await micro.add_endpoint(
        name="status",
        subject=ctx.subjects.status(svc.name),
        queue_group=ctx.instance,
        handler=on_status,
    )
    await micro.add_endpoint(
        name="reload",
        subject=ctx.subjects.config_reload,
        queue_group=ctx.instance,
        handler=on_reload,
    )
    # Service-specific control endpoints (e.g. the node-agent's sandbox.list), answered by every instance.
    for name, subject, handler in getattr(svc, "endpoints", list)():
        await micro.add_endpoint(name=name, subject=subject, queue_group=ctx.instance, handler=handler)
    ctx._micro = micro


async def _watch_config(holders: Sequence[ConfigHolder], stop: asyncio.Event, interval: float = 2.0) -> None:
    """Reload when the config file changes on disk (the old config stays if the new one is invalid).
    Nothing a reload raises stops the watching: a later, valid edit is still applied."""
    while not stop.is_set():
        await wait_for_stop(stop, interval)
        for holder in holders:
            if holder.changed_on_disk():
                await _reload(holder)


# Reloads started by SIGHUP, kept referenced until done (the loop holds tasks only weakly).
_signalled: set[asyncio.Task[None]] = set()


def _reload_soon(holders: Sequence[ConfigHolder]) -> None:
    async def reload_all() -> None:
        for holder in holders:
            await _reload(holder)

    task = asyncio.ensure_future(reload_all())
    _signalled.add(task)
    task.add_done_callback(_signalled.discard)


async def _reload(holder: ConfigHolder) -> None:
    try:
        await holder.reload_async()
    except Exception:  # reload_async reports its own failures; this is the last guard
        holder.failed_reloads += 1
        log.exception("config reload failed")


async def _health_file(
    path: str, contexts: Sequence[ServiceContext], stop: asyncio.Event, interval: float = 5.0
) -> None:
    """Touch `path` while every service is connected to NATS: container health checks look at
    its age (`CLAWMESH_HEALTH_FILE`), so a process that lost NATS shows as unhealthy."""
    while not stop.is_set():
        if all(ctx.nc.is_connected for ctx in contexts):
            # a file we cannot touch ages, and the process shows as unhealthy: the honest signal
            with contextlib.suppress(OSError), open(path, "w") as fh:
                fh.write(f"{time.time():.0f}\n")
        await wait_for_stop(stop, interval)


async def run_services(
    factories: Sequence[tuple[ServiceFactory, ServiceContext]],
    *,
    stop: asyncio.Event | None = None,
    drain_timeout: float = 30.0,
    on_started: Callable[[list[Service]], Awaitable[None] | None] | None = None,
    install_signals: bool = True,
) -> None:
    """Start the services, wait for SIGTERM/SIGINT (or `stop`), then stop them: in-flight work
    finishes within `drain_timeout`, connections are drained. SIGHUP reloads the config.
    Raises ConnectionClosedForGood, after stopping the others, when a service's NATS connection
    closes for good: the process must exit non-zero and be restarted."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    holders = list(dict.fromkeys(ctx.holder for _, ctx in factories))  # services may share one
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: _reload_soon(holders))
    services: list[Service] = []
    contexts: list[ServiceContext] = []
    watcher = asyncio.create_task(_watch_config(holders, stop))
    tasks: list[asyncio.Task[None]] = []
    process = ProcessHealth()
    for _, ctx in factories:
        ctx.health = process
        process.add(ctx.service, ctx.nc)
    closed_watch = asyncio.create_task(watch_connections(process, stop))
    try:
        for factory, ctx in factories:
            services.append(factory(ctx))
            contexts.append(ctx)
        # Independent of each other: start them together (faster `clawmesh up`).
        await asyncio.gather(*(svc.start() for svc in services))
        await asyncio.gather(
            *(_register_micro(ctx, svc) for ctx, svc in zip(contexts, services, strict=True))
        )
        health = os.environ.get("CLAWMESH_HEALTH_FILE")
        if health:
            tasks.append(asyncio.create_task(_health_file(health, contexts, stop)))
        if on_started is not None:
            result = on_started(services)
            if asyncio.iscoroutine(result):
                await result
        process.started = True
        await stop.wait()
    finally:
        process.started = False
        stop.set()
        watcher.cancel()
        for task in tasks:
            task.cancel()
        # Stop in reverse: ingress stops accepting first, runners finish in-flight turns last.
        for svc in reversed(services):
            try:
                await asyncio.wait_for(svc.stop(drain_timeout), drain_timeout + 5)
            except Exception as exc:
                log.error("%s: stop failed: %s", svc.name, exc)
        for ctx in contexts:
            with best_effort(ctx.counters, "micro_stop", log=log):
                if ctx._micro is not None:
                    await ctx._micro.stop()
            # a drain that fails or times out may leave unacked work: it is redelivered elsewhere
            with best_effort(ctx.counters, "drain", log=log):
                await asyncio.wait_for(ctx.nc.drain(), 10)
        for _, ctx in factories:
            if ctx not in contexts:
                with best_effort(ctx.counters, "close", log=log):
                    await ctx.nc.close()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                # the same platforms that refused add_signal_handler above refuse this
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    closed = await closed_watch
    if closed:
        raise ConnectionClosedForGood(closed)

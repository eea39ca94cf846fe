"""Idempotent JetStream set-up: the streams and KV buckets every service relies on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.client import KV_PRE_TEMPLATE, KV_STREAM_TEMPLATE
from nats.js.errors import NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue
from nats.js.object_store import OBJ_STREAM_TEMPLATE

from ..config import NatsSettings, RuntimeSettings
from ..media import MEDIA_BUCKET
from ..wire import Subjects

__all__ = ["BucketSpec", "Layout", "bind_buckets", "provision"]

log = logging.getLogger("clawmesh.bus")

DAY = 86_400.0


@dataclass(frozen=True)
class BucketSpec:
    name: str
    ttl: float | None = None
    history: int = 1


@dataclass(frozen=True)
class Layout:
    """Names and retention of everything clawmesh keeps in JetStream."""

    subjects: Subjects = field(default_factory=Subjects)
    replicas: int = NatsSettings.replicas
    lease_seconds: float = RuntimeSettings.lease_seconds
    inbound_max_bytes: int = NatsSettings.inbound_max_bytes
    sessions_max_bytes: int = NatsSettings.sessions_max_bytes
    dead_letters_max_bytes: int = NatsSettings.dead_letters_max_bytes
    media_max_bytes: int = NatsSettings.media_max_bytes
    router_partitions: int = RuntimeSettings.router_partitions

    def _stream(self, name: str, subject: str, retention: RetentionPolicy, **extra: Any) -> StreamConfig:
        return StreamConfig(
            name=self.subjects.stream(name),
            subjects=[subject],
            retention=retention,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            **extra,
        )

    def inbound_transform(self) -> SubjectTransform | None:
        """CM_INBOUND's partition mapping (`runtime.routerPartitions` > 1), else none."""
        if self.router_partitions <= 1:
            return None
        src, dest = self.subjects.inbound_transform(self.router_partitions)
        return SubjectTransform(src=src, dest=dest)

    def streams(self) -> list[StreamConfig]:
        s = self.subjects
        return [
            # Every accepted message; one durable router consumer per partition (one in all
            # when unpartitioned). Dedupe by channel message id.
            self._stream(
                "INBOUND",
                s.inbound_all,
                RetentionPolicy.LIMITS,
                max_age=7 * DAY,
                max_bytes=self.inbound_max_bytes,
                duplicate_window=120.0,
                discard=DiscardPolicy.OLD,
                subject_transform=self.inbound_transform(),
            ),
            # Routed turns; each is removed once a runner acks it.
            self._stream(
                "TURNS", s.turns_all, RetentionPolicy.WORK_QUEUE, max_age=DAY, duplicate_window=120.0
            ),
            # Replies to deliver; the turn id is the dedupe key, so a replayed turn replies once.
            self._stream(
                "OUTBOUND", s.outbound_all, RetentionPolicy.LIMITS, max_age=DAY, duplicate_window=600.0
            ),
            # Transcripts, one subject per session: any runner anywhere continues any session. No
            # age limit (a session lives as long as people use it); at the size bound the oldest
            # records go.
            self._stream(
                "SESSIONS",
                s.transcripts_all,
                RetentionPolicy.LIMITS,
                max_bytes=self.sessions_max_bytes,
                discard=DiscardPolicy.OLD,
                duplicate_window=600.0,
                allow_direct=True,
            ),
            self._stream(
                "DLQ",
                s.dead_letters_all,
                RetentionPolicy.LIMITS,
                max_age=14 * DAY,
                max_bytes=self.dead_letters_max_bytes,
                discard=DiscardPolicy.OLD,
                duplicate_window=120.0,
            ),
        ]

    def buckets(self) -> list[BucketSpec]:
        return [
            BucketSpec("sessions"),  # per-session sequence (router) and completion state (runner)
            BucketSpec("leases", ttl=self.lease_seconds),  # session and leader leases: expire unless renewed
            BucketSpec("turns", ttl=DAY),  # turn status for polling clients
            BucketSpec("nodes"),  # node presence (node-agent)
            # exec approval requests (node-agent creates, operators decide); each carries its own
            # expiry, the TTL only clears old ones away
            BucketSpec("approvals", ttl=DAY),
            # DM pairing (clawmesh.channels): pending codes (each expires 1 h after creation, by
            # its own timestamp) and the senders approved for good, so no TTL
            BucketSpec("pairing"),
            BucketSpec("channels"),  # channel adapters' state: Telegram getUpdates offsets (ingress)
            # replies sent to a channel, by turn id, so a redelivered reply is not sent again;
            # kept as long as CM_OUTBOUND keeps replies
            BucketSpec("delivered", ttl=DAY),
            # federation: the catalogue each other region broadcasts (ingress keeps the latest);
            # a region that stops broadcasting drops out after an hour
            BucketSpec("gateways", ttl=3600.0),
        ]

    def object_stores(self) -> list[tuple[str, ObjectStoreConfig]]:
        bucket = self.subjects.bucket(MEDIA_BUCKET)
        return [
            # chat files between the ingress that downloaded them and the node that stages them
            # into a workspace (clawmesh.media); a turn stages its files when it runs
            (
                bucket,
                ObjectStoreConfig(
                    bucket=bucket,
                    ttl=DAY,
                    max_bytes=self.media_max_bytes,
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                ),
            )
        ]


async def provision(js: JetStreamContext, layout: Layout, *, wait: float = 60.0) -> dict[str, KeyValue]:
    """Create or update every stream and bucket. Safe to run from every service at every start.
    Retries for up to `wait` seconds while JetStream is not ready (a cluster electing its
    meta leader answers with timeouts or 503s for a few seconds)."""
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.25
    while True:
        try:
            return await _provision_once(js, layout)
        except (NatsTimeoutError, ServiceUnavailableError, NoRespondersError) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("JetStream not ready (%s); retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _provision_once(js: JetStreamContext, layout: Layout) -> dict[str, KeyValue]:
    for config in layout.streams():
        try:
            info = await js.stream_info(config.name)  # type: ignore[arg-type]
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
            continue
        current = info.config
        if (
            current.subjects != config.subjects
            or (current.max_age or 0) != (config.max_age or 0)
            or (current.duplicate_window or 0) != (config.duplicate_window or 0)
            or (current.num_replicas or 1) != (config.num_replicas or 1)
            or _bound(current.max_bytes) != _bound(config.max_bytes)
            or _transform(current.subject_transform) != _transform(config.subject_transform)
        ):
            await js.update_stream(config)
            log.info("updated stream %s", config.name)
    # Direct gets skip the JSON/base64 envelope of the stream API (a fifth of a session read's
    # cost) but may be answered by a lagging replica, and the runner's "is this turn next?"
    # read must see the latest write: direct only where the one replica is the leader.
    direct = layout.replicas == 1
    buckets: dict[str, KeyValue] = {}
    for spec in layout.buckets():
        name = layout.subjects.bucket(spec.name)
        try:
            info = await js.stream_info(KV_STREAM_TEMPLATE.format(bucket=name))
        except NotFoundError:
            buckets[spec.name] = await js.create_key_value(
                KeyValueConfig(
                    bucket=name, history=spec.history, ttl=spec.ttl, replicas=layout.replicas, direct=direct
                )
            )
            log.info("created bucket %s", name)
            continue
        if bool(info.config.allow_direct) != direct:
            info.config.allow_direct = direct
            await js.update_stream(info.config)
            log.info("updated bucket %s (direct gets %s)", name, "on" if direct else "off")
        # what js.key_value() would build, without reading the stream info a second time
        buckets[spec.name] = KeyValue(
            name=name,
            stream=KV_STREAM_TEMPLATE.format(bucket=name),
            pre=KV_PRE_TEMPLATE.format(bucket=name),
            js=js,
            direct=direct,
        )
    for bucket, store in layout.object_stores():
        stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await js.create_object_store(bucket, config=store)
            log.info("created object store %s", bucket)
            continue
        if _bound(info.config.max_bytes) != _bound(store.max_bytes):
            info.config.max_bytes = store.max_bytes
            await js.update_stream(info.config)
            log.info("updated object store %s", bucket)
    return buckets


def _transform(transform: SubjectTransform | None) -> tuple[str, str] | None:
    return (transform.src, transform.dest) if transform is not None and transform.src else None


def _bound(limit: int | None) -> int | None:
    """A stream limit as set: JetStream reports "none" as -1, a config leaves it out."""
    return limit if limit is not None and limit > 0 else None


async def bind_buckets(js: JetStreamContext, layout: Layout) -> dict[str, KeyValue]:
    """Handles on the KV buckets, for processes that know `provision` already ran."""
    return {spec.name: await js.key_value(layout.subjects.bucket(spec.name)) for spec in layout.buckets()}

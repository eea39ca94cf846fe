"""NATS plumbing: connect, JetStream provisioning, tracing, service hosting, embedded server."""

from ._connect import connect
from ._embedded import NatsServer, NatsServerError, find_nats_server
from ._lease import Lease, LeaseLost, Leases
from ._main import OneLineFormatter, configure_logging, run_loop, run_one
from ._process import ConnectionClosedForGood, ProcessHealth
from ._provision import BucketSpec, Layout, provision
from ._publish import PUBLISH_RETRYABLE, publish_retrying
from ._pull import await_orphans, kept_in_progress, pull_forever, wait_for_stop
from ._service import (
    Service,
    ServiceContext,
    ServiceFactory,
    layout_for,
    nats_settings,
    open_context,
    run_services,
)
from ._trace import consumer_span, inject, producer_span, setup_tracing, tracer

__all__ = [
    "PUBLISH_RETRYABLE",
    "BucketSpec",
    "ConnectionClosedForGood",
    "Layout",
    "Lease",
    "LeaseLost",
    "Leases",
    "NatsServer",
    "NatsServerError",
    "OneLineFormatter",
    "ProcessHealth",
    "Service",
    "ServiceContext",
    "ServiceFactory",
    "await_orphans",
    "configure_logging",
    "connect",
    "consumer_span",
    "find_nats_server",
    "inject",
    "kept_in_progress",
    "layout_for",
    "nats_settings",
    "open_context",
    "producer_span",
    "provision",
    "publish_retrying",
    "pull_forever",
    "run_loop",
    "run_one",
    "run_services",
    "setup_tracing",
    "tracer",
    "wait_for_stop",
]

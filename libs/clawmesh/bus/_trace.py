"""W3C trace context in NATS headers, with PRODUCER/CONSUMER spans (OpenTelemetry).

Nothing is exported unless the standard `OTEL_TRACES_EXPORTER` variable asks for it (`otlp`
or `console`); the API is then a no-op and costs next to nothing. Trace context travels only
in headers (`traceparent`), never in payloads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, NoOpTracerProvider, ProxyTracerProvider, Span, SpanKind

__all__ = ["consumer_span", "inject", "producer_span", "setup_tracing", "tracer"]

log = logging.getLogger("clawmesh.trace")
tracer = trace.get_tracer("clawmesh")
_configured = False


def setup_tracing(service_name: str) -> bool:
    """Install an SDK tracer provider when `OTEL_TRACES_EXPORTER` names an exporter. Idempotent."""
    global _configured
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if _configured or exporter_name in ("", "none"):
        return _configured
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        log.warning(
            "OTEL_TRACES_EXPORTER=%s is not supported (use otlp or console); tracing off", exporter_name
        )
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add the current trace context (`traceparent`, `tracestate`, baggage) to NATS headers."""
    carrier = headers if headers is not None else {}
    propagate.inject(carrier)
    return carrier


def _recording() -> bool:
    """Whether a real tracer provider is installed (by `setup_tracing` or by the embedding
    application). Without one, spans are no-ops: only the trace context is passed along."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


@contextmanager
def producer_span(
    name: str, subject: str, headers: dict[str, str], parent: Mapping[str, str] | None = None
) -> Iterator[Span]:
    """A PRODUCER span around a publish; its context is injected into `headers`. `parent`:
    carrier headers to continue a trace from (e.g. an HTTP request's `traceparent`)."""
    context = propagate.extract(dict(parent)) if parent and "traceparent" in parent else None
    if not _recording():
        # What the no-op API would do, minus its span objects (a hot path: every message).
        propagate.inject(headers, context=context)
        yield trace.get_current_span(context)
        return
    with tracer.start_as_current_span(
        f"{name} publish",
        context=context,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def consumer_span(
    name: str, subject: str, headers: Mapping[str, str] | None, **attributes: Any
) -> Iterator[Span]:
    """A CONSUMER span whose parent is the trace context found in the message headers."""
    if not _recording():
        if not headers or "traceparent" not in headers:
            yield INVALID_SPAN
            return
        parent = propagate.extract(dict(headers))
        token = otel_context.attach(parent)
        try:
            yield trace.get_current_span(parent)  # later publishes carry the caller's trace on
        finally:
            otel_context.detach(token)
        return
    parent = propagate.extract(dict(headers or {}))
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            f"{name} process",
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject, **attributes},
        ) as span:
            yield span
    finally:
        otel_context.detach(token)

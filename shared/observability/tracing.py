"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables and off unless they
name an exporter.

On: ``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console``, or it is unset and
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set. The OTLP
exporter speaks HTTP/protobuf and reads its endpoint, headers, timeout and compression from the
usual variables; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and
``OTEL_BSP_*`` apply as everywhere. Off (the default), nothing is installed: the helpers here
return at their first line, FastStream and FastAPI get no tracing middleware, and no span object
is ever built.

One trace follows a request through the platform: the API's server span (FastAPI
instrumentation), the command it publishes and the worker's handler (FastStream's middleware,
context in the NATS message headers), the handler's Redfish requests (client spans, from
``shared.redfish.telemetry``), and the events the change produces — their trace context is stored
with the staged event in the outbox and travels as the ``traceparent`` header when the relay
publishes it, whichever process relays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI
    from faststream._internal.types import BrokerMiddleware

_PROPAGATOR = TraceContextTextMapPropagator()
# W3C trace context keys, as the CloudEvents distributed-tracing extension names them.
TRACE_KEYS = ("traceparent", "tracestate")
# Probes and scrapes would be most of the spans and tell nothing.
UNTRACED_URLS = "/healthz,/readyz,/metrics"

_tracer: Tracer | None = None
_provider: Any = None  # the SDK's TracerProvider once configured


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for something this installation cannot do."""


def enabled() -> bool:
    return _tracer is not None


def exporters(environ: Mapping[str, str]) -> list[Any]:
    """The span exporters the ``OTEL_*`` variables ask for; none: tracing stays off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = "otlp" if endpoint else "none"
    found: list[Any] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            if protocol != "http/protobuf":
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: Racksmith "
                    "exports OTLP over HTTP/protobuf (port 4318 on an OpenTelemetry Collector)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            found.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(ConsoleSpanExporter())
        else:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={name} is not supported (use otlp, console or none)"
            )
    return found


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the tracing SDK for this process if ``OTEL_*`` configures an exporter.

    ``service_name`` is the default ``service.name`` (``OTEL_SERVICE_NAME`` wins). Returns
    whether tracing is on. A second call keeps the first configuration.
    """
    global _tracer, _provider
    if _tracer is not None:
        return True
    chosen = exporters(environ)
    if not chosen:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_VERSION: metadata.version("racksmith")})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("racksmith", metadata.version("racksmith"))
    return True


def shutdown() -> None:
    """Export what is buffered (the SDK also does this at interpreter exit)."""
    if _provider is not None:
        _provider.shutdown()


# -- instrumenting the frameworks --------------------------------------------------------------


def instrument_app(app: FastAPI) -> None:
    """A server span per API request (route templates as names), when tracing is on."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=UNTRACED_URLS,
        # One span per ASGI message would be a span per event on an SSE stream.
        exclude_spans=["receive", "send"],
    )


def broker_middlewares() -> list[BrokerMiddleware[Any, Any]]:
    """FastStream's OpenTelemetry middleware (publish and process spans, context in the
    message headers), when tracing is on."""
    if _tracer is None:
        return []
    from faststream.nats.opentelemetry import NatsTelemetryMiddleware

    return [NatsTelemetryMiddleware(tracer_provider=_provider, include_messages_counters=False)]


# -- spans -------------------------------------------------------------------------------------


def client_span(name: str, attributes: Mapping[str, str | int]) -> Span | None:
    """A started client span under the current one; ``None`` (and nothing built) when off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))


def end_client_span(span: Span, status: int | None, error: BaseException | None) -> None:
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    elif status is not None and status >= 400:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


# -- carrying a trace through the outbox -------------------------------------------------------


def current_context() -> dict[str, str]:
    """The current span's W3C trace context (empty when off or outside a trace), to store with
    work that continues later, elsewhere."""
    if _tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def publishing(
    events: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> Iterator[list[dict[str, str]]]:
    """Producer spans for relayed events, each a child of the trace its change was committed in.

    ``events`` are (subject, event type, stored context) triples; yields, per event, the
    headers that carry its span's context (empty for an event staged outside a trace).
    """
    if _tracer is None:
        yield [{} for _ in events]
        return
    spans: list[Span] = []
    headers: list[dict[str, str]] = []
    for subject, event_type, stored in events:
        if "traceparent" not in stored:
            headers.append({})
            continue
        parent = _PROPAGATOR.extract({k: str(stored[k]) for k in TRACE_KEYS if k in stored})
        span = _tracer.start_span(
            f"{event_type} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation": "publish",
                "messaging.destination.name": subject,
                "cloudevents.event_type": event_type,
            },
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        headers.append(carrier)
        spans.append(span)
    try:
        yield headers
    except BaseException as exc:
        for span in spans:
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        raise
    finally:
        for span in spans:
            span.end()

"""The broker's middlewares: FastStream's Prometheus middleware for every consumer and publish
(the ``racksmith_nats_*`` families), a redelivery count per consumer, and — when tracing is on —
FastStream's OpenTelemetry middleware."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.nats.prometheus.provider import (
    BatchNatsMetricsSettingsProvider,
    NatsMetricsSettingsProvider,
)
from faststream.prometheus import ConsumeAttrs, PrometheusMiddleware
from faststream.response import PublishCommand
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from shared.contracts import subjects
from shared.messaging.streams import WORKER_CONSUMERS
from shared.observability import metrics, tracing

PREFIX = "racksmith_nats"
_EVENT_PREFIX = f"{subjects.EVENT_PREFIX}."

for _consumer in WORKER_CONSUMERS.values():
    metrics.command_redeliveries(_consumer.durable)
    metrics.command_retries(_consumer.durable)
# Their deliveries after the first are mostly reschedules (a job's next step); the job engine
# counts the real redeliveries (``services.jobs.engine``).
_RESCHEDULING = frozenset(c.durable for c in WORKER_CONSUMERS.values() if c.reschedules)


def subject_label(subject: str) -> str:
    """A subject without the entity id events carry (``racksmith.evt.node.*.registered``);
    command subjects have none."""
    if subject.startswith(_EVENT_PREFIX):
        parts = subject.split(".")
        if len(parts) == 5:
            parts[3] = "*"
            return ".".join(parts)
    return subject


class _Subjects(NatsMetricsSettingsProvider):
    def get_consume_attrs_from_message(self, msg: StreamMessage[Msg]) -> ConsumeAttrs:
        attrs = super().get_consume_attrs_from_message(msg)
        attrs["destination_name"] = subject_label(attrs["destination_name"])
        return attrs

    def get_publish_destination_name_from_cmd(self, cmd: PublishCommand) -> str:
        return subject_label(cmd.destination)


def _settings_provider(
    msg: Msg | Sequence[Msg] | None,
) -> NatsMetricsSettingsProvider | BatchNatsMetricsSettingsProvider | None:
    if isinstance(msg, Sequence):
        return BatchNatsMetricsSettingsProvider()
    if isinstance(msg, Msg) or msg is None:
        return _Subjects()
    return None  # key-value and object store watches


class CountRedeliveries(BaseMiddleware):
    """``racksmith_command_redeliveries_total``: a message delivered again to its consumer
    (but for consumers whose handlers reschedule their own messages)."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        if isinstance(raw, Msg) and raw.reply.startswith("$JS.ACK."):
            metadata = raw.metadata
            consumer = metadata.consumer or "unknown"
            if (metadata.num_delivered or 1) > 1 and consumer not in _RESCHEDULING:
                metrics.command_redeliveries(consumer).inc()
        return await call_next(msg)


def broker_middlewares() -> list[Any]:
    """Every middleware a Racksmith broker runs, outermost first."""
    return [
        *tracing.broker_middlewares(),
        PrometheusMiddleware(
            settings_provider_factory=_settings_provider,
            registry=REGISTRY,
            app_name="racksmith",
            metrics_prefix=PREFIX,
        ),
        CountRedeliveries,
    ]


def count_pipelined_publishes(subjects: Sequence[str]) -> None:
    """Count a pipelined batch of commands in ``racksmith_nats_published_messages_total``.

    A batch goes out on the NATS connection directly (one round trip for all), past FastStream's
    publish middleware; without this a bulk start's commands would be missing from the metric.
    The collector is looked up as FastStream itself looks it up, so the labels are its own.
    """
    counter = REGISTRY._names_to_collectors.get(f"{PREFIX}_published_messages_total")
    if counter is None:  # no broker with the Prometheus middleware in this process
        return
    for subject, count in Counter(subject_label(s) for s in subjects).items():
        counter.labels(  # type: ignore[attr-defined]
            app_name="racksmith", broker="nats", destination=subject, status="success"
        ).inc(count)

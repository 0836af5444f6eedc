"""Gauges of shared state, read when the process is scraped, and the ``/metrics`` exposition.

JetStream's consumers (pending, ack-pending, redelivered), the database's backlogs (outbox,
disabled webhooks, pending deliveries) and its active jobs are not this process's to count:
they are read at scrape time, at most every ``MIN_INTERVAL_S`` however many scrapers ask, each
reading bounded by ``TIMEOUT_S``. A reading that fails keeps the gauges' previous values and
counts in ``racksmith_metrics_sampling_failures_total``. Every process reports the same values;
dashboards aggregate them with ``max``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import func
from sqlmodel import col, select

from shared.core.clock import as_utc, utcnow
from shared.core.log import get_logger
from shared.messaging.streams import CONSUMERS
from shared.models import DeliveryStatus, Job, Webhook, WebhookDelivery
from shared.models.jobs import ACTIVE_STATES
from shared.models.outbox import OutboxEvent
from shared.observability import metrics

if TYPE_CHECKING:
    from shared.platform.runtime import Runtime

log = get_logger(__name__)

MIN_INTERVAL_S = 5.0
TIMEOUT_S = 3.0
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class _Sampler:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last: float = float("-inf")


_samplers: weakref.WeakKeyDictionary[Runtime, _Sampler] = weakref.WeakKeyDictionary()


async def _jetstream(runtime: Runtime) -> None:
    if runtime.nats is None:
        return
    js = runtime.nats.jetstream()
    infos = await asyncio.gather(
        *(js.consumer_info(consumer.stream, consumer.durable) for consumer in CONSUMERS)
    )
    for consumer, info in zip(CONSUMERS, infos, strict=True):
        labels = (consumer.stream, consumer.durable)
        metrics.CONSUMER_PENDING.labels(*labels).set(info.num_pending or 0)
        metrics.CONSUMER_ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
        metrics.CONSUMER_REDELIVERED.labels(*labels).set(info.num_redelivered or 0)


def _age_s(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (utcnow() - as_utc(moment)).total_seconds())


async def _database(runtime: Runtime) -> None:
    async with runtime.db.session() as session:
        backlog, oldest = (
            await session.exec(select(func.count(), func.min(OutboxEvent.created_at)))
        ).one()
        disabled = (
            await session.exec(
                select(func.count()).select_from(Webhook).where(~col(Webhook.active))
            )
        ).one()
        pending = (
            await session.exec(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(col(WebhookDelivery.status) == DeliveryStatus.pending)
            )
        ).one()
        jobs = (
            await session.exec(
                select(Job.kind, Job.state, func.count())
                .where(col(Job.state).in_(ACTIVE_STATES))
                .group_by(Job.kind, Job.state)
            )
        ).all()
    counts = {(k, s): 0 for k in metrics.JOB_KINDS for s in metrics.JOB_ACTIVE_STATES}
    for kind, state, count in jobs:
        key = (metrics.job_kind_label(kind), str(state))
        counts[key] = counts.get(key, 0) + count
    for (kind, state), count in counts.items():
        metrics.JOBS_ACTIVE.labels(kind, state).set(count)
    metrics.OUTBOX_BACKLOG.set(backlog)
    metrics.OUTBOX_OLDEST_AGE.set(_age_s(oldest))
    metrics.WEBHOOKS_DISABLED.set(disabled)
    metrics.WEBHOOK_PENDING.set(pending)


async def _read(source: str, runtime: Runtime) -> None:
    reader = _jetstream if source == "jetstream" else _database
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await reader(runtime)
    except Exception as exc:  # a scrape must answer even when NATS or the database is away
        metrics.sampling_failures(source).inc()
        log.warning("metrics.sampling_failed", source=source, error=str(exc))


async def refresh(runtime: Runtime) -> None:
    """Read the shared-state gauges unless they were read less than ``MIN_INTERVAL_S`` ago."""
    sampler = _samplers.get(runtime)
    if sampler is None:
        sampler = _samplers[runtime] = _Sampler()
    async with sampler.lock:
        if time.monotonic() - sampler.last < MIN_INTERVAL_S:
            return
        await asyncio.gather(_read("jetstream", runtime), _read("database", runtime))
        sampler.last = time.monotonic()


async def exposition(runtime: Runtime) -> bytes:
    """The process's metrics in the Prometheus text format (``CONTENT_TYPE``)."""
    await refresh(runtime)
    return generate_latest(REGISTRY)

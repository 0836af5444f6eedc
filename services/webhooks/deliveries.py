"""Sending deliveries: claim what is due, send it, record the outcome, back off, disable.

- Claiming: a delivery is sent only by the process holding its lease (a conditional UPDATE sets
  ``lease_token`` and ``lease_until``), so replicas never send one delivery at the same time. A
  replica that dies mid-send leaves a lease that expires, and another retries the delivery; a
  clean stop releases its leases at once.
- Order: only the oldest pending delivery of each (webhook, entity) may be sent, so one entity's
  events arrive in the order they were published (a retrying one holds back that entity's later
  events); different entities go out in parallel.
- Isolation: at most ``RACKSMITH_WEBHOOK_MAX_IN_FLIGHT`` sends per webhook, of
  ``RACKSMITH_WEBHOOK_CONCURRENCY`` per process, each ending after ``RACKSMITH_WEBHOOK_TIMEOUT_S``:
  a hanging receiver ties up its own slots only.
- Retries: exponential back-off with full jitter, at least what ``Retry-After`` asks, up to
  ``RACKSMITH_WEBHOOK_MAX_ATTEMPTS`` attempts; then the delivery is ``failed``.
- Disabling: ``RACKSMITH_WEBHOOK_DISABLE_AFTER_FAILURES`` failed attempts in a row, over at least
  ``RACKSMITH_WEBHOOK_DISABLE_AFTER_S`` without one success, disable the webhook with the reason,
  and ``webhook.disabled`` is staged in the same transaction.
- Waking: the dispatcher wakes the loop when it records deliveries, and every finished send wakes
  it; otherwise it sleeps until the next retry is due.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Collection
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import SQLColumnExpression, case, exists, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from services.webhooks import sending
from shared.contracts import catalog
from shared.contracts.events import make_event
from shared.core.clock import utcnow
from shared.core.db import Database
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.core.targets import WEBHOOK_RECEIVERS, TargetPolicy
from shared.messaging import outbox
from shared.messaging.publish import BrokerUnavailableError
from shared.models import DeliveryStatus, Webhook, WebhookDelivery
from shared.models.webhooks import WebhookPublic
from shared.observability import metrics
from shared.platform.runtime import Runtime

log = get_logger(__name__)

# The longest sleep with nothing due: deliveries also become sendable elsewhere (a webhook
# re-enabled through the API, another replica's dispatcher, a dead replica's expired lease).
IDLE_RECHECK_S = 5.0
# A lease outlives its attempt's timeout by this much, so it expires only if its holder died.
LEASE_MARGIN_S = 30.0
PRUNE_INTERVAL_S = 3600.0
# Doubling stops mattering long before this; it keeps 2**n a reasonable number.
MAX_DOUBLINGS = 40


def backoff(settings: Settings, attempts: int, retry_after_s: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: full jitter, so receivers
    coming back from an outage are not hit by every retry at the same moment."""
    ceiling = min(
        settings.webhook_retry_max_s,
        settings.webhook_retry_base_s * 2 ** min(max(attempts - 1, 0), MAX_DOUBLINGS),
    )
    delay = random.uniform(0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, settings.webhook_retry_max_s))
    return delay


_EARLIER = aliased(WebhookDelivery)
# Pending deliveries of active webhooks that are the oldest of their (webhook, entity): the only
# ones that may be sent. Built once: constructing the aliased subquery costs more CPU than the
# query itself, and the loop asks on every event.
_HEADS: tuple[SQLColumnExpression[bool], ...] = (
    col(Webhook.active),
    col(WebhookDelivery.status) == DeliveryStatus.pending,
    ~exists().where(
        col(_EARLIER.webhook_id) == col(WebhookDelivery.webhook_id),
        col(_EARLIER.subject) == col(WebhookDelivery.subject),
        col(_EARLIER.status) == DeliveryStatus.pending,
        col(_EARLIER.stream_sequence) < col(WebhookDelivery.stream_sequence),
    ),
)


def _sendable_heads(busy_webhooks: Collection[int]) -> list[SQLColumnExpression[bool]]:
    """The sendable heads (over deliveries joined to their webhook), leaving out webhooks with
    no free slot in this process."""
    conditions = list(_HEADS)
    if busy_webhooks:
        conditions.append(col(WebhookDelivery.webhook_id).not_in(sorted(busy_webhooks)))
    return conditions


_WEBHOOK = (Webhook, col(Webhook.id) == col(WebhookDelivery.webhook_id))


class DeliveryLoop:
    """One per webhooks worker process: claims due deliveries and sends them concurrently."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.policy = TargetPolicy.from_settings(runtime.settings, WEBHOOK_RECEIVERS)
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._per_webhook: Counter[int] = Counter()
        # Leases this process holds and has not recorded an outcome for: released on stop.
        self._leases: set[str] = set()

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.webhook_timeout_s + LEASE_MARGIN_S)

    def wake(self) -> None:
        self._wake.set()

    def _busy(self) -> set[int]:
        cap = self.settings.webhook_max_in_flight
        return {webhook for webhook, n in self._per_webhook.items() if n >= cap}

    def _free(self) -> int:
        return self.settings.webhook_concurrency - len(self._sends)

    async def run(self) -> None:
        http = sending.client(
            self.policy,
            timeout_s=self.settings.webhook_timeout_s,
            limit=self.settings.webhook_concurrency,
        )
        try:
            while True:
                # Cleared before looking, so a wake-up that arrives while we look is not lost.
                self._wake.clear()
                try:
                    await self._start_due(http)
                    wait = await self._next_due_in()
                except Exception as exc:  # the database may be briefly away: look again later
                    log.warning("webhooks.scan_failed", error=str(exc))
                    wait = IDLE_RECHECK_S
                with suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
        finally:
            await self._stop()
            await http.close()

    async def _start_due(self, http: aiohttp.ClientSession) -> None:
        free = self._free()
        if free <= 0:
            return
        now = utcnow()
        due = (
            select(WebhookDelivery)
            .join(*_WEBHOOK)
            .where(
                *_sendable_heads(self._busy()),
                col(WebhookDelivery.next_attempt_at) <= now,
                or_(
                    col(WebhookDelivery.lease_until).is_(None),
                    col(WebhookDelivery.lease_until) < now,
                ),
            )
        )
        cap = self.settings.webhook_max_in_flight
        claimed: list[tuple[WebhookDelivery, str]] = []
        taken: Counter[int] = Counter()
        async with self.db.session() as session:
            candidates = (
                await session.exec(
                    due.order_by(
                        col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id)
                    ).limit(free)
                )
            ).all()
            for delivery in candidates:
                webhook = delivery.webhook_id
                if self._per_webhook[webhook] + taken[webhook] >= cap:
                    continue
                token = await self._claim(session, delivery, now)
                if token is not None:
                    claimed.append((delivery, token))
                    taken[webhook] += 1
            await session.commit()
        for delivery, token in claimed:
            self._per_webhook[delivery.webhook_id] += 1
            self._leases.add(token)
            self._sends.add(asyncio.create_task(self._send(http, delivery, token)))

    async def _claim(
        self, session: AsyncSession, delivery: WebhookDelivery, now: datetime
    ) -> str | None:
        """Take the delivery's lease if nobody holds it (another replica may have just)."""
        token = uuid.uuid4().hex
        result = await session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery.id,
                col(WebhookDelivery.status) == DeliveryStatus.pending,
                or_(
                    col(WebhookDelivery.lease_until).is_(None),
                    col(WebhookDelivery.lease_until) < now,
                ),
            )
            .values(lease_token=token, lease_until=now + self.lease)
        )
        return token if result.rowcount == 1 else None

    async def _next_due_in(self) -> float:
        """Seconds until a delivery this process could start becomes due."""
        if self._free() <= 0:
            return IDLE_RECHECK_S  # a finishing send wakes the loop
        sendable_at = case(
            (
                col(WebhookDelivery.lease_until) > col(WebhookDelivery.next_attempt_at),
                col(WebhookDelivery.lease_until),
            ),
            else_=col(WebhookDelivery.next_attempt_at),
        )
        async with self.db.session() as session:
            earliest: datetime | None = (
                await session.exec(
                    select(func.min(sendable_at))
                    .select_from(WebhookDelivery)
                    .join(*_WEBHOOK)
                    .where(*_sendable_heads(self._busy()))
                )
            ).one()
        if earliest is None:
            return IDLE_RECHECK_S
        return min(IDLE_RECHECK_S, max(0.0, (earliest - utcnow()).total_seconds()))

    async def _send(
        self, http: aiohttp.ClientSession, delivery: WebhookDelivery, token: str
    ) -> None:
        assert delivery.id is not None
        try:
            async with self.db.session() as session:
                webhook = await session.get(Webhook, delivery.webhook_id)
            if webhook is None:  # deleted meanwhile, and its deliveries with it
                self._leases.discard(token)
                return
            started = time.perf_counter()
            outcome = await sending.attempt(
                http,
                self.policy,
                webhook.url,
                delivery.event,
                webhook.content_mode,
                self.runtime.credentials.decrypt(webhook.secret_encrypted),
                delivery.id,
            )
            metrics.WEBHOOK_ATTEMPT_DURATION.observe(time.perf_counter() - started)
            code = outcome.status_code
            metrics.webhook_attempts(metrics.status_class(code) if code else "no_answer").inc()
            await self._record(delivery, token, outcome)
        except Exception as exc:  # its lease expires and the delivery is tried again then
            log.error("webhooks.send_failed", delivery=delivery.id, error=str(exc))
        finally:
            self._per_webhook[delivery.webhook_id] -= 1
            if self._per_webhook[delivery.webhook_id] <= 0:
                del self._per_webhook[delivery.webhook_id]
            self._sends.discard(asyncio.current_task())
            self.wake()

    async def _record(
        self, delivery: WebhookDelivery, token: str, outcome: sending.Outcome
    ) -> None:
        now = utcnow()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error[:2000] if outcome.error else None,
            "lease_token": None,
            "lease_until": None,
            "updated_at": now,
            "next_attempt_at": None,
        }
        if outcome.delivered:
            values |= {"status": DeliveryStatus.delivered, "delivered_at": now}
        elif attempts >= self.settings.webhook_max_attempts:
            values["status"] = DeliveryStatus.failed
        else:
            delay = backoff(self.settings, attempts, outcome.retry_after_s)
            values["next_attempt_at"] = now + timedelta(seconds=delay)
        async with self.db.session() as session:
            result = await session.exec(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery.id,
                    col(WebhookDelivery.lease_token) == token,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                # Our lease expired and another replica took the delivery over: its outcome
                # is the one that counts.
                log.warning("webhooks.lease_lost", delivery=delivery.id)
                await session.rollback()
                self._leases.discard(token)
                return
            disabled = await self._account(session, delivery.webhook_id, outcome, now)
            await session.commit()
        self._leases.discard(token)
        if "status" in values:
            metrics.webhook_deliveries(values["status"].value).inc()
        if disabled:
            metrics.WEBHOOK_DISABLINGS.inc()
        log.info(
            "webhooks.attempt",
            delivery=delivery.id,
            webhook=delivery.webhook_id,
            event_id=delivery.event_id,
            attempt=attempts,
            status_code=outcome.status_code,
            error=outcome.error,
        )
        if disabled:
            try:
                await self.runtime.outbox.relay()
            except BrokerUnavailableError as exc:  # the outbox sweep publishes it later
                log.warning("events.delayed", error=str(exc))

    async def _account(
        self, session: AsyncSession, webhook_id: int, outcome: sending.Outcome, now: datetime
    ) -> bool:
        """Keep the webhook's run of failures; True if this attempt disabled it."""
        if outcome.delivered:
            await session.exec(
                update(Webhook)
                .where(
                    col(Webhook.id) == webhook_id,
                    or_(
                        col(Webhook.consecutive_failures) != 0,
                        col(Webhook.failing_since).is_not(None),
                    ),
                )
                .values(consecutive_failures=0, failing_since=None)
            )
            return False
        # One statement, so concurrent failures of the same webhook all count (the row lock
        # also orders the disabling below: only one of them sees the webhook still active).
        await session.exec(
            update(Webhook)
            .where(col(Webhook.id) == webhook_id)
            .values(
                consecutive_failures=col(Webhook.consecutive_failures) + 1,
                failing_since=func.coalesce(col(Webhook.failing_since), now),
            )
        )
        webhook = (
            await session.exec(
                select(Webhook)
                .where(col(Webhook.id) == webhook_id)
                .execution_options(populate_existing=True)
            )
        ).one_or_none()
        settings = self.settings
        if (
            webhook is None
            or not webhook.active
            or webhook.failing_since is None
            or webhook.consecutive_failures < settings.webhook_disable_after_failures
            or now - webhook.failing_since < timedelta(seconds=settings.webhook_disable_after_s)
        ):
            return False
        webhook.active = False
        webhook.disabled_at = now
        webhook.disabled_reason = (
            f"{webhook.consecutive_failures} delivery attempts in a row failed since "
            f"{webhook.failing_since:%Y-%m-%d %H:%M:%S} UTC; the last: {outcome.error}"
        )[:2000]
        webhook.updated_at = now
        webhook.version += 1
        session.add(webhook)
        outbox.stage(session, catalog.webhook_event(webhook, "disabled"))
        log.warning("webhooks.disabled", webhook=webhook_id, reason=webhook.disabled_reason)
        return True

    async def _stop(self) -> None:
        """Stop sending; hand the unfinished deliveries back at once rather than at lease end."""
        for task in self._sends:
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if not self._leases:
            return
        try:
            async with self.db.session() as session:
                await session.exec(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.lease_token).in_(sorted(self._leases)))
                    .values(lease_token=None, lease_until=None)
                )
                await session.commit()
        except Exception as exc:  # the leases then expire on their own
            log.warning("webhooks.release_failed", error=str(exc))


async def prune(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Drop deliveries older than the retention from the log; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=settings.webhook_delivery_retention_days)
    async with db.session() as session:
        result = await session.exec(
            delete(WebhookDelivery).where(col(WebhookDelivery.created_at) < cutoff)
        )
        await session.commit()
    return result.rowcount


async def prune_forever(runtime: Runtime) -> None:
    while True:
        try:
            pruned = await prune(runtime.db, runtime.settings)
        except Exception as exc:  # keep pruning: the database may be briefly away
            log.warning("webhooks.prune_failed", error=str(exc))
        else:
            if pruned:
                log.info("webhooks.pruned", deliveries=pruned)
        await asyncio.sleep(PRUNE_INTERVAL_S)


async def send_test(runtime: Runtime, webhook: Webhook) -> WebhookDelivery:
    """Send a synthetic ``io.racksmith.webhook.test`` event now, through the same signing and
    sending as real deliveries, and log it as a delivery (one attempt, never retried, not
    counted towards disabling)."""
    assert webhook.id is not None
    event = make_event(
        "webhook",
        webhook.id,
        "test",
        version=uuid.uuid4().hex,
        data=WebhookPublic.of(webhook).model_dump(mode="json"),
    )
    now = utcnow()
    # Logged before sending, so the request can carry its delivery id; a final status keeps
    # the delivery loop away from it.
    delivery = WebhookDelivery(
        webhook_id=webhook.id,
        event_id=event.id,
        event_type=event.type,
        subject=event.subject,
        event=event.model_dump(mode="json"),
        status=DeliveryStatus.failed,
        last_error="Not sent yet.",
        created_at=now,
        updated_at=now,
    )
    async with runtime.db.session() as session:
        session.add(delivery)
        await session.commit()
    assert delivery.id is not None
    settings = runtime.settings
    policy = TargetPolicy.from_settings(settings, WEBHOOK_RECEIVERS)
    async with sending.client(policy, timeout_s=settings.webhook_timeout_s, limit=1) as http:
        outcome = await sending.attempt(
            http,
            policy,
            webhook.url,
            delivery.event,
            webhook.content_mode,
            runtime.credentials.decrypt(webhook.secret_encrypted),
            delivery.id,
        )
    delivery.attempts = 1
    delivery.status = DeliveryStatus.delivered if outcome.delivered else DeliveryStatus.failed
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error[:2000] if outcome.error else None
    delivery.delivered_at = utcnow() if outcome.delivered else None
    delivery.updated_at = utcnow()
    async with runtime.db.session() as session:
        session.add(delivery)
        await session.commit()
    return delivery

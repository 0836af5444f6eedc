"""Consuming commands: one durable pull consumer per worker kind, dispatched to typed handlers.

The delivery rules live here, once, for every worker:
- a handler's effects are committed and its events published before the message is acked;
- a handler that raises is retried with back-off (``nak`` with a delay) until the consumer's
  ``max_deliver``; on the last delivery its ``on_exhausted`` hook marks the target ``error``
  with the reason instead of letting the command loop or vanish;
- a process that dies mid-handler never acks, so JetStream redelivers after ``ack_wait``;
- the events a handler (or its ``on_exhausted`` hook) staged are relayed by the router once it
  returns, before the ack — handlers never relay by hand;
- a handler that returns `Reschedule` has done its part for now and wants the same message
  again later (a job that waits for its BMC): the router naks it with that delay. That is not a
  failure, and is meant for consumers without a delivery limit (``max_deliver`` -1), whose
  work bounds its own attempts and time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from shared.artifacts.store import ArtifactStore
from shared.core.crypto import CredentialCipher
from shared.core.db import Database
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.messaging.outbox import Relayer
from shared.messaging.publish import Publisher
from shared.messaging.streams import COMMANDS_STREAM, WorkerConsumer
from shared.observability import metrics
from shared.redfish import RedfishPool, SessionCache

log = get_logger(__name__)

P = TypeVar("P", bound=BaseModel)

MAX_RETRY_DELAY_S = 60.0
PULL_WAIT_S = 5.0


class WorkerRuntime(Protocol):
    """What a worker process holds and its handlers use (``shared.platform.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def broker(self) -> NatsBroker: ...
    @property
    def publisher(self) -> Publisher: ...
    @property
    def outbox(self) -> Relayer: ...
    @property
    def redfish(self) -> RedfishPool: ...
    @property
    def redfish_sessions(self) -> SessionCache: ...
    @property
    def credentials(self) -> CredentialCipher: ...
    @property
    def artifacts(self) -> ArtifactStore: ...


@dataclass
class CommandContext:
    """What a handler gets besides its payload: the process's runtime and the delivery."""

    runtime: WorkerRuntime
    subject: str
    delivery: int
    max_deliver: int
    message: NatsMessage

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def publisher(self) -> Publisher:
        return self.runtime.publisher

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def is_last_delivery(self) -> bool:
        # -1: redelivered until it succeeds (the work bounds its own attempts).
        return 0 < self.max_deliver <= self.delivery

    async def in_progress(self) -> None:
        """Tell JetStream we are still working, so long BMC work is not redelivered."""
        await self.message.in_progress()


class RetryLater(Exception):
    """Raise from a handler to be redelivered after ``delay`` seconds (e.g. a busy BMC)."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass(frozen=True)
class Reschedule:
    """A handler's answer "deliver this message to me again in ``delay`` seconds".

    The work is committed and the message is not held meanwhile: JetStream keeps it pending
    (and redelivers it to any replica) while no worker does anything for it.
    """

    delay: float
    reason: str = ""


Handler = Callable[[P, CommandContext], Awaitable[Reschedule | None]]
ExhaustedHook = Callable[[P, CommandContext, BaseException], Awaitable[None]]


@dataclass
class _Route(Generic[P]):
    model: type[P]
    handler: Handler[P]
    on_exhausted: ExhaustedHook[P] | None


@asynccontextmanager
async def _heartbeat(ctx: CommandContext) -> AsyncIterator[None]:
    """In-progress acks while a handler works, so slow BMC work is not redelivered to another
    replica while this one is alive; a dead process stops beating and the command moves on."""
    interval = max(0.2, ctx.settings.command_ack_wait_s / 3)

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await ctx.in_progress()
            except Exception as exc:  # a missed beat only risks a redelivery
                log.debug("command.heartbeat_failed", error=str(exc))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def retry_delay(delivery: int) -> float:
    """Exponential back-off between redeliveries of a failed command."""
    return float(min(MAX_RETRY_DELAY_S, 2 ** max(0, delivery - 1)))


@dataclass
class CommandRouter:
    """The commands one worker kind handles, keyed by exact subject."""

    consumer: WorkerConsumer
    routes: dict[str, _Route[Any]] = field(default_factory=dict)

    def command(
        self,
        subject: str,
        model: type[P],
        *,
        on_exhausted: ExhaustedHook[P] | None = None,
    ) -> Callable[[Handler[P]], Handler[P]]:
        def register(handler: Handler[P]) -> Handler[P]:
            self.routes[subject] = _Route(model, handler, on_exhausted)
            return handler

        return register

    def attach(self, runtime: WorkerRuntime) -> None:
        """Subscribe this router's durable consumer on the runtime's broker: one pull loop per
        handler slot.

        Each loop fetches one command only when its slot is free and handles it before fetching
        the next, so a fetched command starts (and starts its heartbeat) at once. A shared
        fetcher feeding a pool of workers would hold commands it fetched while every worker is
        busy: they wait unheartbeaten, pass ``ack_wait`` and are delivered again to another
        replica while this one still intends to run them.
        """
        consumer = self.consumer
        config = consumer.config(runtime.settings)
        for slot in range(consumer.concurrency):
            self._subscribe(runtime, config, slot)

    def _subscribe(self, runtime: WorkerRuntime, config: Any, slot: int) -> None:
        consumer = self.consumer

        @runtime.broker.subscriber(
            consumer.filter_subject,
            stream=JStream(COMMANDS_STREAM, declare=False),
            durable=consumer.durable,
            config=config,
            # An idle slot's pull request waits this long on the server (a command that arrives
            # meanwhile is delivered at once); longer means fewer idle round trips.
            pull_sub=PullSub(batch_size=1, timeout=PULL_WAIT_S),
            ack_policy=AckPolicy.MANUAL,
            title=f"{consumer.kind} commands, slot {slot}",
            description=f"Durable pull consumer `{consumer.durable}` on {COMMANDS_STREAM}.",
        )
        async def on_command(message: NatsMessage) -> None:
            # Raw bytes on purpose: the route's own model validates them, so a bad payload is
            # rejected by our rules rather than by the framework's implicit decoding.
            await self.dispatch(message.body, message, runtime)

    async def dispatch(self, body: bytes, message: NatsMessage, runtime: WorkerRuntime) -> None:
        raw: Msg = message.raw_message
        metadata = raw.metadata
        delivery = metadata.num_delivered or 1
        structlog.contextvars.bind_contextvars(
            message_id=(raw.headers or {}).get("Nats-Msg-Id", str(metadata.sequence.stream)),
            subject=raw.subject,
            delivery=delivery,
            worker=self.consumer.kind,
        )
        try:
            await self._dispatch(body, message, raw.subject, delivery, runtime)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "subject", "delivery", "worker")

    async def _dispatch(
        self, body: bytes, message: NatsMessage, subject: str, delivery: int, runtime: WorkerRuntime
    ) -> None:
        route = self.routes.get(subject)
        if route is None:
            # A command no handler knows cannot succeed by retrying; drop it loudly.
            log.error("command.unknown_subject")
            await message.reject()
            return
        try:
            payload = route.model.model_validate_json(body)
        except ValidationError as exc:
            log.error("command.invalid_payload", errors=exc.errors(include_input=False))
            await message.reject()
            return
        max_deliver = self.consumer.max_deliver(runtime.settings)
        ctx = CommandContext(
            runtime=runtime,
            subject=subject,
            delivery=delivery,
            max_deliver=max_deliver,
            message=message,
        )
        try:
            async with _heartbeat(ctx):
                again = await route.handler(payload, ctx)
                await runtime.outbox.relay()
        except Exception as exc:
            if not ctx.is_last_delivery:
                delay = exc.delay if isinstance(exc, RetryLater) else retry_delay(delivery)
                log.warning("command.failed_will_retry", error=str(exc), retry_in_s=delay)
                await message.nack(delay=delay)
                metrics.command_retries(self.consumer.durable).inc()
                return
            log.error("command.failed_finally", error=str(exc))
            if route.on_exhausted is not None:
                try:
                    await route.on_exhausted(payload, ctx, exc)
                    await runtime.outbox.relay()
                except Exception as hook_error:  # still end the command: it has no deliveries left
                    log.error("command.exhausted_hook_failed", error=str(hook_error))
            await message.reject()
            return
        if again is not None:
            await message.nack(delay=max(0.0, again.delay))
            log.debug("command.rescheduled", delay_s=again.delay, reason=again.reason)
            return
        await message.ack()
        log.debug("command.done")

"""Commands and events through a real nats-server with JetStream: declaration, delivery rules,
redelivery after a crash, retry exhaustion, deduplication."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy
from prometheus_client import REGISTRY
from pydantic import BaseModel
from sqlmodel import col, select

from shared.contracts.events import make_event
from shared.core.db import Database
from shared.core.settings import Settings
from shared.messaging import outbox, publish, streams
from shared.messaging.consumer import CommandContext, CommandRouter
from shared.messaging.publish import BrokerUnavailableError, Publisher
from shared.messaging.streams import COMMANDS_STREAM, EVENTS_STREAM, WorkerConsumer
from shared.models import OutboxEvent
from shared.platform.runtime import Runtime

pytestmark = pytest.mark.broker


class Ping(BaseModel):
    n: int


@asynccontextmanager
async def worker(settings: Settings, router: CommandRouter) -> AsyncIterator[Runtime]:
    """A worker process in miniature: its own connection, the router attached, consuming."""
    runtime = Runtime(settings, settings.nats_url or "")
    await runtime.connect()
    router.attach(runtime)
    await runtime.start_consuming()
    try:
        yield runtime
    finally:
        await runtime.close()


def make_router(unique: str) -> tuple[CommandRouter, str]:
    consumer = WorkerConsumer(
        f"test-{unique}", f"racksmith.cmd.t{unique}.>", concurrency=2, max_ack_pending=10
    )
    return CommandRouter(consumer), f"racksmith.cmd.t{unique}.ping"


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def drained(runtime: Runtime, durable: str) -> None:
    """Wait until the consumer has nothing pending and nothing awaiting an ack."""
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    async with asyncio.timeout(10):
        while True:
            info = await js.consumer_info(COMMANDS_STREAM, durable)
            if not info.num_pending and not info.num_ack_pending:
                return
            await asyncio.sleep(0.05)


async def test_streams_and_worker_consumers_are_declared(runtime: Runtime) -> None:
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    commands = await js.stream_info(COMMANDS_STREAM)
    assert commands.config.retention == RetentionPolicy.WORK_QUEUE
    assert commands.config.subjects == ["racksmith.cmd.>"]
    events = await js.stream_info(EVENTS_STREAM)
    assert events.config.retention == RetentionPolicy.LIMITS
    assert events.config.max_age == pytest.approx(7 * 24 * 3600)
    for consumer in streams.WORKER_CONSUMERS.values():
        info = await js.consumer_info(COMMANDS_STREAM, consumer.durable)
        assert info.config.filter_subject == consumer.filter_subject
        assert info.config.max_deliver == consumer.max_deliver(runtime.settings)
        assert info.config.max_ack_pending == consumer.max_ack_pending
    # Declaring again is a no-op, not an error (every process does it at start).
    await streams.declare(js, runtime.settings)


async def test_handler_error_is_retried_then_acked(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    router, subject = make_router(unique)
    seen: list[int] = []

    @router.command(subject, Ping)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        seen.append(ctx.delivery)
        if ctx.delivery == 1:
            raise RuntimeError("BMC said no")

    async with worker(settings, router) as rt:
        await runtime.publisher.raw_command(subject, Ping(n=1), msg_id=f"ping:{unique}")
        await wait_for(lambda: seen == [1, 2])
        await drained(rt, router.consumer.durable)
    # The retry is counted as one, so it is not mistaken for a duplicate delivery.
    retries = REGISTRY.get_sample_value(
        "racksmith_command_retries_total", {"consumer": router.consumer.durable}
    )
    assert retries == 1


async def test_crashed_worker_command_is_redelivered_to_another(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    """A worker dies mid-handler (no ack): after ack_wait another replica completes it once."""
    router, subject = make_router(unique)
    started = asyncio.Event()
    completed: list[int] = []

    @router.command(subject, Ping)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        if ctx.delivery == 1:
            started.set()
            await asyncio.Event().wait()  # hangs like a killed process: never acks
        completed.append(payload.n)

    quick_shutdown = settings.model_copy(update={"shutdown_timeout_s": 0.2})
    async with worker(quick_shutdown, router):
        await runtime.publisher.raw_command(subject, Ping(n=7), msg_id=f"ping:{unique}")
        async with asyncio.timeout(10):
            await started.wait()
    # First replica is gone without acking; a second one picks the command up.
    async with worker(settings, router) as rt:
        await wait_for(lambda: completed == [7])
        await drained(rt, router.consumer.durable)
    assert completed == [7]


async def test_more_commands_than_slots_are_each_delivered_once(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    """A command is fetched only when a slot is free and heartbeats from then on: with ten
    commands for two slots, each longer than half of ``ack_wait``, none waits past ``ack_wait``
    unheartbeaten, so none is delivered twice (no replica was killed)."""
    router, subject = make_router(unique)
    deliveries: list[tuple[int, int]] = []

    @router.command(subject, Ping)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        deliveries.append((payload.n, ctx.delivery))
        await asyncio.sleep(0.7)

    short_wait = settings.model_copy(update={"command_ack_wait_s": 1.0})
    async with worker(short_wait, router) as rt:
        for n in range(10):
            await runtime.publisher.raw_command(subject, Ping(n=n), msg_id=f"ping:{unique}:{n}")
        await wait_for(lambda: len({n for n, _ in deliveries}) == 10, timeout=60)
        await drained(rt, router.consumer.durable)
    assert sorted(deliveries) == [(n, 1) for n in range(10)]


async def test_last_delivery_marks_target_instead_of_looping(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    router, subject = make_router(unique)
    attempts: list[int] = []
    exhausted: list[str] = []

    async def give_up(payload: Ping, ctx: CommandContext, error: BaseException) -> None:
        exhausted.append(f"{payload.n}: {error}")

    @router.command(subject, Ping, on_exhausted=give_up)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        attempts.append(ctx.delivery)
        raise TimeoutError("BMC did not answer")

    async with worker(settings, router):
        await runtime.publisher.raw_command(subject, Ping(n=3), msg_id=f"ping:{unique}")
        await wait_for(lambda: bool(exhausted))
        await asyncio.sleep(0.5)
    assert attempts == [1, 2, 3]
    assert exhausted == ["3: BMC did not answer"]


async def test_same_msg_id_is_delivered_once(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    router, subject = make_router(unique)
    received: list[int] = []

    @router.command(subject, Ping)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        received.append(payload.n)

    for n in (1, 2):  # a redelivered API or handler re-publishing the same command
        await runtime.publisher.raw_command(subject, Ping(n=n), msg_id=f"ping:{unique}")
    await runtime.publisher.raw_command(subject, Ping(n=3), msg_id=f"ping:{unique}:other")
    async with worker(settings, router):
        await wait_for(lambda: len(received) == 2)
        await asyncio.sleep(0.3)
    assert sorted(received) == [1, 3]  # deduplicated; concurrent handlers may finish in any order


async def test_unknown_or_invalid_commands_are_dropped_not_retried(
    runtime: Runtime, settings: Settings, unique: str
) -> None:
    router, subject = make_router(unique)
    received: list[int] = []

    @router.command(subject, Ping)
    async def handle(payload: Ping, ctx: CommandContext) -> None:
        received.append(payload.n)

    class Other(BaseModel):
        text: str

    async with worker(settings, router) as rt:
        await runtime.publisher.raw_command(
            f"racksmith.cmd.t{unique}.unknown", Ping(n=1), msg_id=f"u:{unique}"
        )
        await runtime.publisher.raw_command(subject, Other(text="x"), msg_id=f"i:{unique}")
        await runtime.publisher.raw_command(subject, Ping(n=5), msg_id=f"ok:{unique}")
        await wait_for(lambda: received == [5])
        await drained(rt, router.consumer.durable)


async def test_events_are_cloudevents_on_entity_subjects(runtime: Runtime, unique: str) -> None:
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    subscription = await js.subscribe(f"racksmith.evt.thing.{unique}.>", ordered_consumer=True)
    event = make_event("thing", unique, "created", version=1, data={"id": unique})
    await runtime.publisher.event(event)
    await runtime.publisher.event(event)  # a redelivered handler publishing again
    message = await subscription.next_msg(timeout=5)
    assert message.subject == f"racksmith.evt.thing.{unique}.created"
    body = event.model_validate_json(message.data)
    assert body.specversion == "1.0"
    assert body.type == "io.racksmith.thing.created"
    assert body.subject == f"thing/{unique}"
    assert body.id == f"evt:thing:{unique}:created:1"
    with pytest.raises(TimeoutError):
        await subscription.next_msg(timeout=0.5)
    await subscription.unsubscribe()


async def test_concurrent_relays_publish_each_event_once(runtime: Runtime, unique: str) -> None:
    """Handlers and the periodic sweep relay at the same time; a plain (non-JetStream)
    subscriber, which JetStream's deduplication does not protect, still sees every event once."""
    assert runtime.nats is not None
    received: list[str] = []

    async def on_message(message: Msg) -> None:
        received.append(message.subject)

    subscription = await runtime.nats.subscribe(f"racksmith.evt.relay.{unique}.>", cb=on_message)
    async with runtime.db.session() as session:
        for n in range(40):
            outbox.stage(session, make_event("relay", unique, f"c{n}", version=1, data={}))
        await session.commit()
    await asyncio.gather(*(outbox.relay(runtime.db, runtime.publisher) for _ in range(4)))
    await runtime.nats.flush()
    await asyncio.sleep(0.3)
    await subscription.unsubscribe()
    assert sorted(received) == sorted(f"racksmith.evt.relay.{unique}.c{n}" for n in range(40))


async def test_relayer_serves_callers_that_ask_during_a_relay_with_one_more_relay(
    runtime: Runtime, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight callers commit, then ask at once: every one returns only once its own event is on
    the stream, and they share one relay instead of running eight on the same rows — those who
    asked while it ran are served by it, since their events were committed before it began."""
    assert runtime.nats is not None
    relayer = outbox.Relayer(runtime.db, runtime.publisher)
    relays = 0
    real_relay = outbox.relay

    async def counted(
        db: Database, publisher: Publisher, entities: frozenset[str] | None = None
    ) -> int:
        nonlocal relays
        relays += 1
        return await real_relay(db, publisher, entities)

    monkeypatch.setattr(outbox, "relay", counted)
    js = runtime.nats.jetstream()
    all_committed = asyncio.Barrier(8)

    async def commit_and_relay(n: int) -> None:
        async with runtime.db.session() as session:
            outbox.stage(session, make_event("relayer", unique, f"c{n}", version=1, data={}))
            await session.commit()
        await all_committed.wait()
        await relayer.relay()
        # Published before relay() returned: the stream already holds it.
        stored = await js.get_last_msg(EVENTS_STREAM, f"racksmith.evt.relayer.{unique}.c{n}")
        assert stored.data

    await asyncio.gather(*(commit_and_relay(n) for n in range(8)))
    assert relays == 1
    # Asked again with nothing committed since: nothing to do, no transaction.
    await relayer.relay()
    assert relays == 1


async def test_a_sweep_relays_what_other_processes_left(
    runtime: Runtime, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows this process did not write (another process died before relaying them) do not move
    its count of outbox writes; the sweep relays them anyway."""
    relayer = outbox.Relayer(runtime.db, runtime.publisher)
    event_id = f"evt:orphan:{unique}:left:1"
    async with runtime.db.session() as session:
        session.add(
            OutboxEvent(
                event_id=event_id,
                subject=f"racksmith.evt.orphan.{unique}.left",
                body=make_event("orphan", unique, "left", version=1, data={}).model_dump(
                    mode="json"
                ),
            )
        )
        await session.commit()
    await relayer.relay(sweep=True)
    async with runtime.db.session() as session:
        left = (
            await session.exec(
                select(OutboxEvent).where(
                    col(OutboxEvent.event_id) == f"evt:orphan:{unique}:left:1"
                )
            )
        ).all()
    assert left == []


async def test_a_wake_always_relays_and_never_wakes_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that wrote nothing skips the relay it is asked for — but not the one another
    process's wake asks for (the rows are that process's), and a woken relay does not wake the
    other owners in turn (or two processes would wake each other while an owner is down); the
    sweep does."""
    wakes: list[str] = []
    relays: list[str] = []
    real_relay = outbox.relay

    async def counted(
        db: Database, publisher: Publisher, entities: frozenset[str] | None = None
    ) -> int:
        relays.append("relay")
        return await real_relay(db, publisher, entities)

    async def others_pending(db: Database, entities: frozenset[str]) -> bool:
        return True  # another owner's rows wait (its process is down)

    async def wake() -> None:
        wakes.append("wake")

    monkeypatch.setattr(outbox, "relay", counted)
    monkeypatch.setattr(outbox, "others_pending", others_pending)
    relayer = outbox.Relayer(runtime.db, runtime.publisher, frozenset({"mine"}), wake)
    await relayer.relay(sweep=True)
    assert (relays, wakes) == (["relay"], ["wake"])
    await relayer.relay()  # nothing staged here since: no transaction, nothing to wake for
    assert (relays, wakes) == (["relay"], ["wake"])
    await relayer.relay(woken=True)
    assert (relays, wakes) == (["relay", "relay"], ["wake"])


async def test_a_refused_event_batch_raises_and_frees_its_pending_slots(
    runtime: Runtime, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runtime.nats is not None
    publisher = Publisher(runtime.broker)
    publisher.attach(runtime.nats)
    # JetStream refuses a publish whose expected stream does not hold the subject.
    monkeypatch.setattr(publish, "EVENTS_STREAM", f"NOT_{unique}")
    batch = [make_event("refused", unique, f"c{n}", version=1, data={}) for n in range(3)]
    with pytest.raises(BrokerUnavailableError):
        await publisher.events(batch)
    js = publisher._js
    assert js is not None and js.publish_async_pending() == 0


async def test_a_failed_event_batch_gives_back_the_slots_of_acks_still_pending(
    runtime: Runtime, unique: str
) -> None:
    """The broker refuses one event of a batch and never acknowledges the others: the batch
    fails at once, and the other ack futures are cancelled, which frees the client's
    pending-publish slots (otherwise a few thousand such events would stall every publish)."""
    acks: list[asyncio.Future[object]] = []

    class HalfDeadJetStream:
        async def publish_async(self, *args: object, **kwargs: object) -> asyncio.Future[object]:
            acks.append(asyncio.get_running_loop().create_future())
            if len(acks) == 1:
                acks[0].set_exception(RuntimeError("refused"))
            return acks[-1]

    publisher = Publisher(runtime.broker)
    publisher._js = HalfDeadJetStream()  # type: ignore[assignment]
    batch = [make_event("stalled", unique, f"c{n}", version=1, data={}) for n in range(3)]
    with pytest.raises(BrokerUnavailableError, match="refused"):
        await publisher.events(batch)
    assert len(acks) == 3 and all(ack.cancelled() for ack in acks[1:])

"""The JetStream streams and the durable worker consumers, declared once.

Everything that touches NATS (API, workers, `racksmith migrate`, the Kubernetes autoscalers'
configuration and its tests) reads these definitions, so a renamed consumer cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from shared.contracts import subjects
from shared.core.settings import MAX_THROTTLE_WINDOW_S, Settings

COMMANDS_STREAM = "RACKSMITH_COMMANDS"
EVENTS_STREAM = "RACKSMITH_EVENTS"
# Window in which a repeated Nats-Msg-Id is dropped by the server: long enough to cover a
# redelivered handler re-publishing after its ack_wait expired.
DUPLICATE_WINDOW_S = 15 * 60
DAY_S = 24 * 3600
# The API replicas' shared login-throttle windows (services/api/throttle.py). Entries are
# dropped a day after their last write, so throttle windows are at most a day long; the size cap
# keeps a flood of distinct usernames from growing it without bound (writes beyond it fail, and
# the API then counts in its own memory).
LOGIN_THROTTLE_BUCKET = "racksmith_login_throttle"
LOGIN_THROTTLE_MAX_AGE_S = MAX_THROTTLE_WINDOW_S
LOGIN_THROTTLE_MAX_BYTES = 64 * 1024 * 1024


def commands_stream_config() -> StreamConfig:
    return StreamConfig(
        name=COMMANDS_STREAM,
        description="Work for the Racksmith workers; each message is consumed once.",
        subjects=[f"{subjects.COMMAND_PREFIX}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def login_throttle_config() -> KeyValueConfig:
    return KeyValueConfig(
        bucket=LOGIN_THROTTLE_BUCKET,
        description="Racksmith login attempts per client address and failures per username.",
        history=1,
        ttl=LOGIN_THROTTLE_MAX_AGE_S,
        max_bytes=LOGIN_THROTTLE_MAX_BYTES,
        storage=StorageType.FILE,
    )


def events_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        description="Racksmith status changes as CloudEvents; replayable by any subscriber.",
        subjects=[f"{subjects.EVENT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.events_max_age_days * DAY_S,
        max_bytes=settings.events_max_bytes,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


@dataclass(frozen=True)
class WorkerConsumer:
    """One durable pull consumer, shared by every replica of a worker kind."""

    kind: str
    filter_subject: str
    # How many commands one replica works on at once; BMC work is I/O-bound.
    concurrency: int
    max_ack_pending: int
    # A setting name overriding `command_max_deliver` for this consumer (BMC work waits out
    # busy BMCs far longer than other work); None: redelivered until it succeeds.
    max_deliver_setting: str | None = "command_max_deliver"
    stream: str = COMMANDS_STREAM
    # Commands queued before a worker first started are work to do; events published before a
    # consumer existed are history that nobody subscribed to.
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    # The consumer lag one replica absorbs, which the autoscaler divides by (None: concurrency,
    # since every pending command needs a slot).
    lag_per_replica: int | None = None
    # Its handlers ask for their message again later (``Reschedule``): a delivery after the
    # first is then the work's own rhythm, not a redelivery; the handlers count real ones.
    reschedules: bool = False

    @property
    def scale_lag(self) -> int:
        return self.lag_per_replica or self.concurrency

    def max_deliver(self, settings: Settings) -> int:
        if self.max_deliver_setting is None:
            return -1
        value: int = getattr(settings, self.max_deliver_setting)
        return value

    @property
    def durable(self) -> str:
        return self.kind

    def config(self, settings: Settings) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            filter_subject=self.filter_subject,
            deliver_policy=self.deliver_policy,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.command_ack_wait_s,
            max_deliver=self.max_deliver(settings),
            max_ack_pending=self.max_ack_pending,
        )


# A chunk holds its slot until its slowest responder answers, so a scanner takes many chunks at
# once; the probes of all of them share one per-process limit (RACKSMITH_SCAN_CONCURRENCY).
SCANNER = WorkerConsumer("scanner", subjects.SCAN_COMMANDS, concurrency=32, max_ack_pending=512)
# BMC work waits on slow BMCs, not on CPU: a replica works on as many BMCs as its Redfish pool
# allows (RACKSMITH_REDFISH_TOTAL / RACKSMITH_REDFISH_PER_BMC = 64 by default).
REGISTRAR = WorkerConsumer(
    "registrar",
    subjects.NODE_COMMANDS,
    concurrency=64,
    max_ack_pending=1024,
    max_deliver_setting="bmc_max_deliver",
)
INVENTORY = WorkerConsumer(
    "inventory",
    subjects.SERVER_COMMANDS,
    concurrency=64,
    max_ack_pending=2048,
    max_deliver_setting="bmc_max_deliver",
)
# One tick message per active job, redelivered (a nak with a delay) for as long as the job lives:
# no delivery limit (the engine bounds a job by its deadlines and step attempts), and a pending
# limit above any number of jobs that can be active at once (one per server; a waiting job's
# message counts as pending while JetStream holds it back). A waiting job costs a replica one
# short step per poll interval, so one replica carries far more jobs than it has slots.
JOBS = WorkerConsumer(
    "jobs",
    subjects.JOB_COMMANDS,
    concurrency=64,
    max_ack_pending=100_000,
    max_deliver_setting=None,
    lag_per_replica=256,
    reschedules=True,
)
# Downloads of firmware binaries and OS images from their source URLs: few at once per replica
# (each is bandwidth, not waiting), heartbeats keep long ones from being redelivered.
FETCHER = WorkerConsumer("fetcher", subjects.ARTIFACT_COMMANDS, concurrency=4, max_ack_pending=64)
# The command consumers; KEDA scales each worker kind on its lag (deploy/k8s/base/keda.yaml).
WORKER_CONSUMERS: dict[str, WorkerConsumer] = {
    c.kind: c for c in (SCANNER, REGISTRAR, INVENTORY, FETCHER, JOBS)
}
# Turns every event into delivery rows for the matching webhooks (services/webhooks). As many
# events in flight as one batch, so batches are recorded one after another in stream order (the
# order each entity's deliveries go out in); redelivered until recorded, since a dropped event
# would be a delivery lost.
WEBHOOKS = WorkerConsumer(
    "webhooks",
    f"{subjects.EVENT_PREFIX}.>",
    concurrency=1,
    max_ack_pending=100,
    max_deliver_setting=None,
    stream=EVENTS_STREAM,
    deliver_policy=DeliverPolicy.NEW,
)
CONSUMERS: tuple[WorkerConsumer, ...] = (*WORKER_CONSUMERS.values(), WEBHOOKS)


async def declare(js: JetStreamContext, settings: Settings) -> None:
    """Create or update both streams and every worker consumer, and create the login-throttle
    bucket (idempotent).

    Run by `racksmith migrate` and at every start, so consumers exist before any worker (or an
    autoscaler reading their lag) looks for them.
    """
    for config in (commands_stream_config(), events_stream_config(settings)):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
    for consumer in CONSUMERS:
        await js.add_consumer(consumer.stream, consumer.config(settings))
    try:
        await js.key_value(LOGIN_THROTTLE_BUCKET)
    except BucketNotFoundError:
        await js.create_key_value(login_throttle_config())

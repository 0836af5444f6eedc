"""Every ``racksmith_*`` Prometheus metric family, defined once, with the label rules.

Labels have bounded values only — a vendor from a fixed list, an HTTP method, a status class, an
outcome, a reason class, a subject without ids, a worker kind — never an address, an id, a URL
path with ids or a user name: one series per BMC would make a fleet of thousands unqueryable.
Families whose label values are known up front get every child created at import, so they have
samples (and ``rate()`` works) before the first event.

Hot paths take their children from a ``Children`` cache (a dict lookup instead of
``labels()``' validation and lock). The families that describe shared state (JetStream
consumers, the outbox, webhooks) are gauges set when the process is scraped
(``shared.observability.sampling``). FastStream's middleware adds the ``racksmith_nats_*``
families (``shared.observability.messaging``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

M = TypeVar("M", bound=MetricWrapperBase)

# A ``_created`` series per counter and histogram child doubles what Prometheus stores and no
# query here needs it.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Children(Generic[M]):
    """The labelled children of one family, created on first use and then looked up in a dict."""

    def __init__(self, family: M, initial: Iterable[tuple[str, ...]] = ()) -> None:
        self._family = family
        self._cache: dict[Hashable, M] = {}
        for values in initial:
            self(*values)

    def __call__(self, *values: str) -> M:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._family.labels(*values)
        return child


# -- label values ------------------------------------------------------------------------------

# BMC vendors by a word their service root's Vendor (or Oem key) contains; anything else is
# "other", a BMC that names none is "unknown".
_VENDOR_WORDS = (
    ("dell", "dell"),
    ("hpe", "hpe"),
    ("hewlett", "hpe"),
    ("supermicro", "supermicro"),
    ("lenovo", "lenovo"),
    ("cisco", "cisco"),
    ("fujitsu", "fujitsu"),
    ("huawei", "huawei"),
    ("inspur", "inspur"),
    ("gigabyte", "gigabyte"),
    ("asrock", "asrockrack"),
    ("nvidia", "nvidia"),
    ("intel", "intel"),
    ("ami", "ami"),
    ("wiwynn", "wiwynn"),
    ("quanta", "quanta"),
    ("openbmc", "openbmc"),
    ("contoso", "contoso"),  # the DMTF's example vendor, in many public mockups
)
VENDORS = (*sorted({label for _, label in _VENDOR_WORDS}), "other", "unknown")
_HTTP_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"})


def vendor_label(vendor: str | None) -> str:
    """The bounded vendor label of a BMC's self-reported vendor string."""
    if not vendor or not vendor.strip():
        return "unknown"
    words = "".join(ch if ch.isalnum() else " " for ch in vendor.lower()).split()
    for word in words:
        for key, label in _VENDOR_WORDS:
            if word.startswith(key):
                return label
    return "other"


def method_label(method: str) -> str:
    return method if method in _HTTP_METHODS else "other"


def status_class(status: int | None) -> str:
    """``2xx`` … ``5xx`` for an HTTP status; ``error`` when no status came (transport error)."""
    if status is None:
        return "error"
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


# -- buckets -----------------------------------------------------------------------------------

FAST_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BMC_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
WORK_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
COUNT = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

# -- API ---------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "racksmith_http_requests_total",
    "API requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "racksmith_http_request_duration_seconds",
    "API request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- BMC requests (shared/redfish/client.py) --------------------------------------------------

BMC_REQUESTS = Counter(
    "racksmith_bmc_requests_total",
    "Redfish requests to BMCs by vendor, method and status class (error: no HTTP answer).",
    ["vendor", "method", "status_class"],
)
BMC_REQUEST_DURATION = Histogram(
    "racksmith_bmc_request_duration_seconds",
    "Redfish request latency by vendor and method, from sending to the end of the body.",
    ["vendor", "method"],
    buckets=BMC_S,
)
BMC_SESSIONS_OPEN = Gauge(
    "racksmith_bmc_sessions_open",
    "BMC sessions this process holds (logged in, not yet logged out), by vendor.",
    ["vendor"],
)
BMC_BUSY = Counter(
    "racksmith_bmc_busy_total",
    "Busy answers from BMCs (503, 504, 429: overloaded or session table full), by vendor.",
    ["vendor"],
)
BMC_UNREACHABLE = Counter(
    "racksmith_bmc_unreachable_total",
    "Redfish requests that got no usable connection (refused, timed out, reset, TLS failed).",
    ["vendor"],
)

# -- BMC operations: registration, inventory (services/registrar, services/inventory) ----------

OPERATIONS = ("registration", "inventory")
OPERATION_OUTCOMES = ("succeeded", "failed", "retried", "skipped")
# Why BMC work failed or is retried (shared.bmc.failures.failure_class); "none" on success.
FAILURE_REASONS = (
    "none",
    "credentials_refused",
    "certificate",
    "unreachable",
    "busy",
    "not_redfish",
    "not_found",
    "configuration",
    "error",
)
BMC_OPERATIONS = Counter(
    "racksmith_bmc_operations_total",
    "Attempts at BMC work (a registration of a node, an inventory of a server) by outcome "
    "(succeeded, failed: recorded on the target, retried: redelivered later, skipped: stale "
    "command) and reason class.",
    ["operation", "outcome", "reason"],
)
BMC_OPERATION_DURATION = Histogram(
    "racksmith_bmc_operation_duration_seconds",
    "Duration of one attempt at BMC work, by operation and outcome.",
    ["operation", "outcome"],
    buckets=WORK_S,
)
BMC_OPERATION_REQUESTS = Histogram(
    "racksmith_bmc_operation_requests",
    "Redfish requests one attempt made (registration: per node, inventory: per server).",
    ["operation"],
    buckets=COUNT,
)

# -- discovery (services/scanner) --------------------------------------------------------------

PROBE_OUTCOMES = ("bmc", "refused", "silent", "tls_failed", "not_redfish", "timeout_after_accept")
SCAN_PROBES = Counter(
    "racksmith_scan_probes_total",
    "Probes (address and port) by outcome: bmc (a Redfish service), refused (TCP reset), silent "
    "(no answer to the connect), tls_failed, not_redfish (TLS but no Redfish service root), "
    "timeout_after_accept (accepted, then no TLS or HTTP answer in time).",
    ["outcome"],
)
SCAN_CHUNKS = Counter(
    "racksmith_scan_chunks_total",
    "Scan chunks finished: done, or failed after every delivery.",
    ["outcome"],
)
SCAN_CHUNK_DURATION = Histogram(
    "racksmith_scan_chunk_duration_seconds",
    "Time to probe one chunk and record its result.",
    buckets=WORK_S,
)
SCAN_RUNS = Counter(
    "racksmith_scan_runs_total",
    "Scan runs ended, by outcome (completed, failed).",
    ["outcome"],
)
SCAN_RUN_DURATION = Histogram(
    "racksmith_scan_run_duration_seconds",
    "Duration of a scan run from run_scan to its end.",
    buckets=WORK_S,
)

# -- jobs (shared/lifecycle/job.py) -----------------------------------------------------------

# The job kinds (services/jobs/kinds registers one of each; a test keeps them equal) and states.
JOB_KINDS = ("power", "boot", "deployment")
JOB_ACTIVE_STATES = ("pending", "running", "waiting")
JOB_FINAL_STATES = ("completed", "failed", "cancelled")


def job_kind_label(kind: str) -> str:
    return kind if kind in JOB_KINDS else "other"


JOBS_TOTAL = Counter(
    "racksmith_jobs_total",
    "Jobs that reached a state, by kind: pending (created), running (taken up by a worker), "
    "completed, failed, cancelled; each job counts once per state.",
    ["kind", "state"],
)
JOB_DURATION = Histogram(
    "racksmith_job_duration_seconds",
    "Duration of a job from its creation to its end, by kind and outcome (its final state).",
    ["kind", "outcome"],
    buckets=WORK_S,
)
JOB_DEADLINE_FAILURES = Counter(
    "racksmith_job_deadline_failures_total",
    "Jobs failed because a deadline passed (the job's, or a waiting step's), by kind.",
    ["kind"],
)
# Not `racksmith_jobs`: prometheus_client names the counter's family that (without _total).
JOBS_ACTIVE = Gauge(
    "racksmith_jobs_active",
    "Active jobs by kind and state: pending, running, waiting (read at scrape time).",
    ["kind", "state"],
)

# -- messaging ---------------------------------------------------------------------------------

COMMAND_REDELIVERIES = Counter(
    "racksmith_command_redeliveries_total",
    "Commands received again (an earlier delivery failed, was retried or its worker died), "
    "by consumer.",
    ["consumer"],
)
COMMAND_RETRIES = Counter(
    "racksmith_command_retries_total",
    "Commands a worker handed back for a later delivery because its handler failed or asked to "
    "be retried (e.g. a busy BMC), by consumer. Redeliveries beyond these are duplicates (or a "
    "worker died holding the command).",
    ["consumer"],
)
EVENTS_PUBLISHED = Counter(
    "racksmith_events_published_total",
    "Events relayed from the outbox to RACKSMITH_EVENTS, by event type.",
    ["type"],
)
EVENT_PUBLISH_DURATION = Histogram(
    "racksmith_event_publish_duration_seconds",
    "Time for one relayed batch of events to be acknowledged by JetStream.",
    buckets=FAST_S,
)
OUTBOX_RELAY_LAG = Histogram(
    "racksmith_outbox_relay_lag_seconds",
    "Time from an event's commit to its acknowledgement by JetStream.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
OUTBOX_BACKLOG = Gauge(
    "racksmith_outbox_backlog_events",
    "Committed events not relayed yet (read from the database at scrape time).",
)
OUTBOX_OLDEST_AGE = Gauge(
    "racksmith_outbox_oldest_event_age_seconds",
    "Age of the oldest event waiting in the outbox; 0 when it is empty (scrape time).",
)
CONSUMER_PENDING = Gauge(
    "racksmith_jetstream_consumer_pending",
    "Messages of a durable consumer's stream not yet delivered to it (read from JetStream).",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "racksmith_jetstream_consumer_ack_pending",
    "Messages delivered to a durable consumer and not acknowledged yet (read from JetStream).",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "racksmith_jetstream_consumer_redelivered",
    "Messages of a durable consumer delivered more than once and still unacknowledged.",
    ["stream", "consumer"],
)
SAMPLING_FAILURES = Counter(
    "racksmith_metrics_sampling_failures_total",
    "Scrape-time readings that failed (their gauges keep the previous value), by source.",
    ["source"],
)

# -- webhooks (services/webhooks) --------------------------------------------------------------

WEBHOOK_ATTEMPTS = Counter(
    "racksmith_webhook_attempts_total",
    "Webhook delivery attempts by the receiver's status class (no_answer: timeout, refused "
    "or forbidden connection).",
    ["status_class"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "racksmith_webhook_attempt_duration_seconds",
    "Duration of one webhook delivery attempt.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_DELIVERIES = Counter(
    "racksmith_webhook_deliveries_total",
    "Webhook deliveries finished: delivered, or failed after the last attempt.",
    ["outcome"],
)
WEBHOOK_DISABLINGS = Counter(
    "racksmith_webhook_disablings_total",
    "Webhooks disabled after failing for too long.",
)
WEBHOOKS_DISABLED = Gauge(
    "racksmith_webhooks_disabled",
    "Webhooks currently disabled (scrape time).",
)
WEBHOOK_PENDING = Gauge(
    "racksmith_webhook_deliveries_pending",
    "Webhook deliveries waiting for a (first or next) attempt (scrape time).",
)

# -- artifact server (services/artifacts/server.py) -------------------------------------------

ARTIFACT_DOWNLOADS = Counter(
    "racksmith_artifact_downloads_total",
    "Artifact requests from BMCs by outcome: full, range, not_found, failed.",
    ["outcome"],
)
ARTIFACT_BYTES_SERVED = Counter(
    "racksmith_artifact_bytes_served_total",
    "Bytes of firmware binaries and OS images sent to BMCs.",
)

# -- children ----------------------------------------------------------------------------------

http_requests = Children(HTTP_REQUESTS)
http_duration = Children(HTTP_DURATION)
bmc_requests = Children(BMC_REQUESTS)
bmc_request_duration = Children(BMC_REQUEST_DURATION)
bmc_sessions_open = Children(BMC_SESSIONS_OPEN)
bmc_busy = Children(BMC_BUSY)
bmc_unreachable = Children(BMC_UNREACHABLE)
bmc_operations = Children(BMC_OPERATIONS)
bmc_operation_duration = Children(BMC_OPERATION_DURATION)
bmc_operation_requests = Children(BMC_OPERATION_REQUESTS, [(o,) for o in OPERATIONS])
scan_probes = Children(SCAN_PROBES, [(o,) for o in PROBE_OUTCOMES])
scan_chunks = Children(SCAN_CHUNKS, [("done",), ("failed",)])
scan_runs = Children(SCAN_RUNS, [("completed",), ("failed",)])
command_redeliveries = Children(COMMAND_REDELIVERIES)
command_retries = Children(COMMAND_RETRIES)
events_published = Children(EVENTS_PUBLISHED)
sampling_failures = Children(SAMPLING_FAILURES, [("jetstream",), ("database",)])
webhook_attempts = Children(WEBHOOK_ATTEMPTS)
webhook_deliveries = Children(WEBHOOK_DELIVERIES, [("delivered",), ("failed",)])
jobs_total = Children(
    JOBS_TOTAL, [(k, s) for k in JOB_KINDS for s in ("pending", "running", *JOB_FINAL_STATES)]
)
job_duration = Children(JOB_DURATION, [(k, o) for k in JOB_KINDS for o in JOB_FINAL_STATES])
job_deadline_failures = Children(JOB_DEADLINE_FAILURES, [(k,) for k in JOB_KINDS])
artifact_downloads = Children(
    ARTIFACT_DOWNLOADS, [("full",), ("range",), ("not_found",), ("failed",)]
)
# Every (operation, outcome, reason) an alert or an increase() may ask about, from the start.
for _operation in OPERATIONS:
    bmc_operations(_operation, "succeeded", "none")
    for _outcome in ("succeeded", "failed", "retried"):
        bmc_operation_duration(_operation, _outcome)
    for _outcome in ("failed", "retried"):
        for _reason in FAILURE_REASONS[1:]:
            bmc_operations(_operation, _outcome, _reason)
for _status_class in ("2xx", "3xx", "4xx", "5xx", "no_answer"):
    webhook_attempts(_status_class)


# -- recording with a commit -------------------------------------------------------------------

_ON_COMMIT = "racksmith.metrics.on_commit"


def on_commit(session: AsyncSession, record: Callable[[], None]) -> None:
    """Run ``record`` when the session's transaction commits (never if it rolls back), so a
    metric counts what became true, not what was attempted."""
    session.sync_session.info.setdefault(_ON_COMMIT, []).append(record)


@orm_event.listens_for(Session, "after_commit")
def _record_committed(session: Session) -> None:
    for record in session.info.pop(_ON_COMMIT, []):
        record()


@orm_event.listens_for(Session, "after_rollback")
def _drop_uncommitted(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)

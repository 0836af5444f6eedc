"""Jobs: every long-running action on a server (power, boot; later firmware updates and OS
deployments), as a database state machine the jobs worker moves forward one step at a time.

The row is the whole truth about a job: which step it is in and since when, until when that step
may take, what a step asked the BMC to do before it did it (``intent``) and what the BMC answered
(``intent_result``), and which worker holds it right now (``lease_*``). A worker killed at any
point leaves enough behind for the next one to resume without repeating an effect.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ValidationInfo, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, Column, Index, String, Text
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.core.settings import Settings
from shared.models.base import NEVER_REUSE_IDS
from shared.models.deployments import DEPLOYMENT
from shared.models.servers import InventoryErrorCode


class JobState(StrEnum):
    pending = "pending"  # created, no worker has taken it yet
    running = "running"  # a step is being carried out
    waiting = "waiting"  # waiting for something outside (PowerState, a BMC task, an installer)
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_STATES = (JobState.pending, JobState.running, JobState.waiting)
FINAL_STATES = (JobState.completed, JobState.failed, JobState.cancelled)

# A job's error code for a change request the BMC refused (4xx); its other BMC failures have the
# codes a server's inventory failures have (``shared.bmc.failures``).
BMC_REFUSED = "bmc_refused"
BMC_BUSY = InventoryErrorCode.bmc_busy.value
BMC_UNREACHABLE = InventoryErrorCode.bmc_unreachable.value
_ASK = "an administrator can see the details"
# What users who are not superusers read instead of a BMC failure's reason, which names the BMC's
# address and often the account used to log in (as for a server's ``inventory_error``).
BMC_FAILURE_TEXTS: dict[str, str] = {
    **{
        code.value: InventoryErrorCode.generic_text(code)
        for code in InventoryErrorCode
        if code is not InventoryErrorCode.bmc_error
    },
    InventoryErrorCode.bmc_error.value: f"The server's BMC failed the request; {_ASK}.",
    BMC_REFUSED: f"The server's BMC refused the request; {_ASK}.",
}


class Job(SQLModel, table=True):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_server_created", "server_id", "created_at"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    state: JobState = Field(default=JobState.pending, sa_type=String(16), index=True)
    step: str | None = Field(default=None, max_length=64)
    progress: int | None = None
    # Indexed by ix_job_server_created (a server's jobs, newest first).
    server_id: int | None = Field(default=None, foreign_key="server.id", ondelete="SET NULL")
    # The server's id while the job is active, NULL once it ended. Its UNIQUE constraint is what
    # allows one active job per server: a second start fails in the database, not in a
    # check-then-insert that two requests could both pass.
    active_server_id: int | None = Field(
        default=None, foreign_key="server.id", ondelete="SET NULL", unique=True
    )
    created_by_id: int | None = Field(
        default=None, foreign_key="user.id", ondelete="SET NULL", index=True
    )
    # The request as accepted (e.g. {"action": "power_cycle"}); the kind reads it.
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The kind's own bookkeeping between steps (a plan, observed values, a task URI).
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    messages: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    waiting_for: str | None = Field(default=None, max_length=300)
    error_code: str | None = Field(default=None, max_length=64, index=True)
    error: str | None = Field(default=None, sa_type=Text)
    # This job's place in a chain of retries: 1 for the first attempt.
    attempts: int = 1
    # UNIQUE: a finished job is retried at most once (two concurrent retries: one wins).
    retry_of_id: int | None = Field(
        default=None, foreign_key="job.id", ondelete="SET NULL", unique=True
    )
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    finished_at: datetime | None = Field(default=None, index=True)
    deadline_at: datetime | None = None
    # The current step: since when, until when, how often it was tried, and the error_code the
    # job fails with if the step is still not done at its deadline.
    step_started_at: datetime | None = None
    step_deadline_at: datetime | None = None
    step_expiry_code: str | None = Field(default=None, max_length=64)
    step_attempts: int = 0
    # A non-idempotent BMC call of the current step, committed before the call is made, and what
    # it started (status, task URI, time), committed right after. Intent without a result means
    # the worker died (or the connection broke) mid-call: the BMC is looked at before any retry.
    intent: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    intent_result: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    # The tick message currently driving the job; an older one (superseded by a wake) is dropped.
    ticket: int = 1
    ticks: int = 0
    next_tick_at: datetime | None = None
    # Held by the worker carrying out a step, so two deliveries never act on one job at once.
    lease_token: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = None
    cancel_requested: bool = False
    # Progress events are rate-limited: when one went out and whether a change is still unsaid.
    progress_event_at: datetime | None = None
    progress_pending: bool = False
    updated_at: datetime = Field(default_factory=utcnow)
    # Bumped on every change an event reports; part of the event ids.
    version: int = 1


# --- API shapes (not tables) -------------------------------------------------------------------


class JobMessage(BaseModel):
    time: datetime
    text: str
    message_id: str | None = PField(
        default=None, description="The BMC's Redfish MessageId, when the message is the BMC's."
    )
    code: str | None = PField(
        default=None,
        description="The error code of the failure or retry the message reports, if it does.",
    )


class JobPublic(BaseModel):
    id: int
    kind: str = PField(description="`power`, `boot`, `deployment`.")
    state: JobState
    step: str | None = PField(description="Kind-specific, e.g. `reset`, `await_power`.")
    progress: int | None = PField(description="0-100, or null when unknown.")
    server: int | None
    created_by: int | None
    params: dict[str, Any]
    waiting_for: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    step_deadline_at: datetime | None
    error_code: str | None = PField(description="Stable and machine-readable; see docs/jobs.md.")
    error: str | None
    messages: list[JobMessage] = PField(description="What happened and what the BMC said.")
    attempts: int = PField(description="1 for a first attempt, n+1 for a retry of attempt n.")
    retry_of: int | None
    cancel_requested: bool

    @classmethod
    def of(cls, job: Job) -> "JobPublic":
        related = {
            "server": job.server_id,
            "created_by": job.created_by_id,
            "retry_of": job.retry_of_id,
        }
        data = {name: getattr(job, name) for name in cls.model_fields if name not in related}
        return cls.model_validate(data | related)

    def without_bmc_details(self) -> Self:
        """As a user who is not a superuser sees it: a BMC failure's reason, in ``error`` and
        in the messages, becomes its code's generic text."""
        error = self.error
        if error is not None and self.error_code in BMC_FAILURE_TEXTS:
            error = BMC_FAILURE_TEXTS[self.error_code]
        messages = [
            m.model_copy(update={"text": BMC_FAILURE_TEXTS[m.code]})
            if m.code in BMC_FAILURE_TEXTS
            else m
            for m in self.messages
        ]
        return self.model_copy(update={"error": error, "messages": messages})


class PowerAction(StrEnum):
    on = "on"
    off = "off"
    graceful_shutdown = "graceful_shutdown"
    restart = "restart"
    graceful_restart = "graceful_restart"
    power_cycle = "power_cycle"
    nmi = "nmi"


GRACEFUL_ACTIONS = (PowerAction.graceful_shutdown, PowerAction.graceful_restart)


class PowerRequest(BaseModel):
    action: PowerAction
    timeout: float | None = PField(
        default=None,
        ge=1,
        le=86_400,
        description="Graceful actions: seconds the operating system gets to shut down "
        "(default RACKSMITH_JOB_GRACEFUL_TIMEOUT_S).",
    )
    force_after_timeout: bool = PField(
        default=False,
        description="Graceful actions: force the power off when the operating system has not "
        "shut down in time, instead of failing with `graceful_shutdown_timeout`.",
    )

    @field_validator("timeout", "force_after_timeout")
    @classmethod
    def _graceful_only(cls, value: Any, info: ValidationInfo) -> Any:
        action = info.data.get("action")
        if value not in (None, False) and action is not None and action not in GRACEFUL_ACTIONS:
            raise ValueError("Only graceful_shutdown and graceful_restart take this field.")
        return value


def job_deadline_s(kind: str, params: dict[str, Any], settings: Settings) -> float:
    """Seconds from a job's creation to its deadline: ``job_deadline_s``, or longer when the
    request gives the operating system more time than that leaves — a graceful action's wait
    (its ``timeout``, else the graceful default) plus every other step its plan may take, each
    bounded by the power timeout: the graceful reset's POST, and up to two resets after it (the
    power-on of a fallback, or the forced resets of ``force_after_timeout``), a POST and a wait
    each."""
    if kind == DEPLOYMENT:
        return settings.deploy_deadline_s
    if kind != "power":
        return settings.job_deadline_s
    request = PowerRequest.model_validate(params)
    if request.action not in GRACEFUL_ACTIONS:
        return settings.job_deadline_s
    graceful = request.timeout or settings.job_graceful_timeout_s
    steps = graceful + 5 * settings.job_power_timeout_s + settings.job_tick_timeout_s
    return max(settings.job_deadline_s, steps)


class BulkPowerRequest(PowerRequest):
    servers: list[int] = PField(min_length=1, max_length=10_000)


class BootTarget(StrEnum):
    pxe = "pxe"
    cd = "cd"
    hdd = "hdd"
    uefi_http = "uefi_http"
    bios_setup = "bios_setup"
    none = "none"


class BootEnabled(StrEnum):
    once = "once"
    continuous = "continuous"


class BootMode(StrEnum):
    uefi = "uefi"
    legacy = "legacy"


class BootRequest(BaseModel):
    target: BootTarget
    enabled: BootEnabled = BootEnabled.once
    mode: BootMode | None = PField(
        default=None, description="Omitted: the mode the system is set to now is kept."
    )
    http_boot_uri: str | None = PField(
        default=None,
        min_length=1,
        max_length=2000,
        pattern=r"^https?://\S+$",
        # Validated when omitted too, so a missing URI for uefi_http is an error naming it.
        validate_default=True,
        description="Required for `uefi_http`, not allowed otherwise.",
    )

    @field_validator("http_boot_uri")
    @classmethod
    def _uefi_http_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        target = info.data.get("target")
        if value is None and target is BootTarget.uefi_http:
            raise ValueError("This field is required for the uefi_http target.")
        if value is not None and target not in (BootTarget.uefi_http, None):
            raise ValueError("Only the uefi_http target takes an http_boot_uri.")
        return value


class BulkJobs(BaseModel):
    jobs: list[JobPublic]

"""What a worker does when a BMC misbehaves, decided in one place for every kind of BMC work.

Busy BMCs recover (retry later, honouring ``Retry-After``); unreachable ones get a few attempts;
anything else — refused credentials, a wrong certificate, a BMC that does not speak Redfish — is
recorded on the target at once, with a reason a person can act on. ``classify`` says which, with
the stable ``error_code`` a job records; commands (registration, inventory) act on it through
``reason_or_retry``, the job engine through its own step attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.messaging.consumer import CommandContext, RetryLater
from shared.redfish import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    RedfishError,
    RequestRefused,
)

MAX_BUSY_DELAY_S = 60.0


@dataclass(frozen=True)
class BmcFailure:
    code: str  # stable, machine-readable (a job's error_code)
    reason: str  # for people
    retry: Literal["busy", "unreachable"] | None  # worth another attempt, and why
    retry_after: float | None = None  # what the BMC asked for (Retry-After)


def classify(exc: RedfishError, bmc: str) -> BmcFailure:
    if isinstance(exc, BmcBusy):
        return BmcFailure("bmc_busy", f"BMC {bmc} is busy: {exc}", "busy", exc.retry_after)
    if isinstance(exc, BmcUnreachable):
        return BmcFailure("bmc_unreachable", f"BMC {bmc} unreachable: {exc}", "unreachable")
    if isinstance(exc, AuthenticationFailed):
        return BmcFailure("bmc_auth_failed", f"BMC {bmc}: {exc}", None)
    if isinstance(exc, CertificateMismatch):
        return BmcFailure("bmc_certificate_changed", f"BMC {bmc}: {exc}", None)
    if isinstance(exc, RequestRefused):
        return BmcFailure("bmc_refused", f"BMC {bmc}: {exc}", None)
    if isinstance(exc, ProtocolError):
        return BmcFailure(
            "bmc_protocol_error", f"BMC {bmc} does not behave like Redfish: {exc}", None
        )
    return BmcFailure("bmc_error", f"BMC {bmc}: {exc}", None)


def busy_delay(failure: BmcFailure, attempt: int) -> float:
    """How long to leave a busy BMC alone: its Retry-After, else exponential back-off."""
    return min(MAX_BUSY_DELAY_S, failure.retry_after or 2.0 ** min(attempt, 6))


def reason_or_retry(exc: RedfishError, ctx: CommandContext, bmc: str) -> str:
    """The error to record on the target; raises instead when the work should be retried."""
    failure = classify(exc, bmc)
    if failure.retry == "busy":
        raise RetryLater(failure.reason, busy_delay(failure, ctx.delivery)) from exc
    if failure.retry == "unreachable":
        if ctx.delivery < ctx.settings.bmc_unreachable_attempts:
            raise exc
        return f"BMC {bmc} unreachable after {ctx.delivery} attempts: {exc}"
    return failure.reason

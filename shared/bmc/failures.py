"""What a worker does when a BMC misbehaves, decided in one place for every kind of BMC work.

Busy BMCs recover (retry later, honouring ``Retry-After``); unreachable ones get a few attempts;
anything else — refused credentials, a wrong certificate, a BMC that does not speak Redfish — is
recorded on the target at once, with a reason a person can act on. ``failure_class`` names the
failure (a metric label), ``code_for`` gives its stable code — the ``inventory_error_code`` of a
server, and a job's ``error_code`` (``classify``, which adds ``bmc_refused`` for a change request
the BMC refused) — members see that code and a generic text, superusers the reason too. Commands
(registration, inventory) act on it through ``reason_or_retry``, the job engine through its own
step attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.messaging.consumer import CommandContext, RetryLater
from shared.models import InventoryErrorCode
from shared.models.jobs import BMC_REFUSED
from shared.redfish import BmcBusy, BmcUnreachable, ProtocolError, RedfishError, RequestRefused
from shared.redfish import errors as redfish

MAX_BUSY_DELAY_S = 60.0


@dataclass(frozen=True)
class BmcFailure:
    code: str  # stable, machine-readable (a job's error_code)
    reason: str  # for people (superusers: it names the BMC, often the account)
    retry: Literal["busy", "unreachable"] | None  # worth another attempt, and why
    retry_after: float | None = None  # what the BMC asked for (Retry-After)


def classify(exc: RedfishError, bmc: str) -> BmcFailure:
    cause = failure_class(exc)
    code = BMC_REFUSED if isinstance(exc, RequestRefused) else code_for(cause).value
    if isinstance(exc, BmcBusy):
        return BmcFailure(code, f"BMC {bmc} is busy: {exc}", "busy", exc.retry_after)
    if isinstance(exc, BmcUnreachable):
        return BmcFailure(code, f"BMC {bmc} unreachable: {exc}", "unreachable")
    if isinstance(exc, ProtocolError) and not isinstance(exc, RequestRefused):
        return BmcFailure(code, f"BMC {bmc} does not behave like Redfish: {exc}", None)
    return BmcFailure(code, f"BMC {bmc}: {exc}", None)


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


_FAILURE_CLASSES: tuple[tuple[type[RedfishError], str], ...] = (
    (redfish.AuthenticationFailed, "credentials_refused"),
    (redfish.CertificateMismatch, "certificate"),
    (redfish.BmcBusy, "busy"),
    (redfish.BmcUnreachable, "unreachable"),
    (redfish.ResourceNotFound, "not_found"),
    (redfish.ProtocolError, "not_redfish"),
)


def failure_class(exc: BaseException) -> str:
    """Why BMC work failed, as one of a few names (a metric label; the message says the rest).

    Follows ``raise … from`` causes, so a ``RetryLater`` raised for a busy BMC is ``busy``.
    """
    seen: BaseException | None = exc
    while seen is not None:
        for kind, name in _FAILURE_CLASSES:
            if isinstance(seen, kind):
                return name
        seen = seen.__cause__
    return "error"


# What a failure class means to anyone who sees the target (members see this code and its
# generic text; the full reason, which names the BMC and often the account, is for superusers).
_CODES = {
    "unreachable": InventoryErrorCode.bmc_unreachable,
    "busy": InventoryErrorCode.bmc_busy,
    "credentials_refused": InventoryErrorCode.bmc_credentials_refused,
    "certificate": InventoryErrorCode.bmc_certificate_mismatch,
    "not_redfish": InventoryErrorCode.bmc_not_redfish,
    "configuration": InventoryErrorCode.bmc_access_not_configured,
}


def code_for(failure: str) -> InventoryErrorCode:
    """The code of a failure class (``failure_class``): one classification serves both."""
    return _CODES.get(failure, InventoryErrorCode.bmc_error)

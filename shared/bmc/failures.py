"""What a worker does when a BMC misbehaves, decided in one place for every kind of BMC work.

Busy BMCs recover (retry later, honouring ``Retry-After``); unreachable ones get a few attempts;
anything else — refused credentials, a wrong certificate, a BMC that does not speak Redfish — is
recorded on the target at once, with a reason a person can act on.
"""

from __future__ import annotations

from shared.messaging.consumer import CommandContext, RetryLater
from shared.models import InventoryErrorCode
from shared.redfish import BmcBusy, BmcUnreachable, ProtocolError, RedfishError
from shared.redfish import errors as redfish

MAX_BUSY_DELAY_S = 60.0


def reason_or_retry(exc: RedfishError, ctx: CommandContext, bmc: str) -> str:
    """The error to record on the target; raises instead when the work should be retried."""
    if isinstance(exc, BmcBusy):
        delay = min(MAX_BUSY_DELAY_S, exc.retry_after or 2.0 ** min(ctx.delivery, 6))
        raise RetryLater(f"BMC {bmc} is busy: {exc}", delay) from exc
    if isinstance(exc, BmcUnreachable):
        if ctx.delivery < ctx.settings.bmc_unreachable_attempts:
            raise exc
        return f"BMC {bmc} unreachable after {ctx.delivery} attempts: {exc}"
    if isinstance(exc, ProtocolError):
        return f"BMC {bmc} does not behave like Redfish: {exc}"
    return f"BMC {bmc}: {exc}"


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

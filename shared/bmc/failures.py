"""What a worker does when a BMC misbehaves, decided in one place for every kind of BMC work.

Busy BMCs recover (retry later, honouring ``Retry-After``); unreachable ones get a few attempts;
anything else — refused credentials, a wrong certificate, a BMC that does not speak Redfish — is
recorded on the target at once, with a reason a person can act on.
"""

from __future__ import annotations

from shared.messaging.consumer import CommandContext, RetryLater
from shared.models import InventoryErrorCode
from shared.redfish import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    RedfishError,
)

MAX_BUSY_DELAY_S = 60.0

_CODES: tuple[tuple[type[RedfishError], InventoryErrorCode], ...] = (
    (BmcUnreachable, InventoryErrorCode.bmc_unreachable),
    (BmcBusy, InventoryErrorCode.bmc_busy),
    (AuthenticationFailed, InventoryErrorCode.bmc_credentials_refused),
    (CertificateMismatch, InventoryErrorCode.bmc_certificate_mismatch),
    (ProtocolError, InventoryErrorCode.bmc_not_redfish),
)


def code_of(exc: BaseException) -> InventoryErrorCode:
    """The code of a failure, which anyone who sees the target may read (the reason is for
    superusers: it names the BMC and often the account)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return InventoryErrorCode.bmc_error


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

"""What can go wrong talking to a BMC, as exceptions a caller can act on.

Every message names the BMC and says what happened in words an operator can act on. Messages
are built only from values this package controls (URL, status, a validated Redfish MessageId),
never from request bodies or headers, so a password or session token cannot end up in a log
line or an API error through ``str(exc)``.
"""

from __future__ import annotations

import re

# A Redfish MessageId ("Base.1.8.NoValidSession") is safe to repeat; free-text messages from the
# BMC are not (some echo the user name or the request back).
_MESSAGE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,79}$")


class RedfishError(Exception):
    """Base class. ``url`` is the resource asked for, ``status`` the HTTP status if one came."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status

    def __str__(self) -> str:
        return self.message


class AuthenticationFailed(RedfishError):
    """The BMC refused the credentials (401/403 on login or on a request)."""


class BmcBusy(RedfishError):
    """The BMC is overloaded or out of sessions (503/504/429); worth retrying later.

    ``retry_after`` is the BMC's ``Retry-After`` in seconds when it sent a number.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class BmcUnreachable(RedfishError):
    """No usable connection: refused, timed out, reset, or the TLS handshake failed."""


class ResponseLost(BmcUnreachable):
    """A change request (POST, PATCH) went out but its answer did not come back: the connection
    broke or timed out after sending. The BMC may or may not have acted on it, so a caller must
    look at the BMC before sending it again."""


class CertificateMismatch(RedfishError):
    """The BMC's certificate does not satisfy the TLS policy.

    Either the pinned SHA-256 fingerprint differs (certificate replaced, or someone in the
    middle) or the certificate is not signed by the configured CA bundle / not issued for the
    address. Never retried silently: a person has to decide whether the new certificate is fine.
    ``presented`` is the SHA-256 of the certificate the BMC showed, when a pin was compared.
    """

    def __init__(
        self, message: str, *, url: str | None = None, presented: str | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.presented = presented


class ProtocolError(RedfishError):
    """The BMC answered, but not with something a Redfish client can use.

    Non-JSON or malformed body, a body over the size cap, a redirect or link leading off the
    BMC, or an unexpected status.
    """


class RequestRefused(ProtocolError):
    """The BMC answered a change request with a 4xx refusal (400, 405, 409, 412, 428…): it did
    not act on it. ``message_id`` is the Redfish MessageId it gave, if any."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        message_id: str | None = None,
    ):
        super().__init__(message, url=url, status=status)
        self.message_id = message_id


class ResourceNotFound(ProtocolError):
    """404/410: the resource does not exist. Common on real BMCs (broken or lower-case links),
    so collectors usually skip it rather than fail the whole BMC."""


def message_id(body: object) -> str | None:
    """The MessageId of a Redfish error body, if it looks like one; ``None`` otherwise."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    candidates: list[object] = [error.get("code")]
    info = error.get("@Message.ExtendedInfo")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        candidates.insert(0, info[0].get("MessageId"))
    for candidate in candidates:
        if isinstance(candidate, str) and _MESSAGE_ID.match(candidate):
            return candidate
    return None

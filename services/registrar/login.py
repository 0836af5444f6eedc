"""Logging in to a node's BMC with an auth profile: credentials in order, one at a time.

One attempt at a time matters: BMCs lock accounts after a few failures, and a burst of parallel
wrong passwords is exactly what triggers that. The TLS policy defaults to trusting the
certificate discovery recorded for the node (so a BMC whose certificate changed since discovery
is refused), unless the profile pins its own fingerprint or verifies against a CA bundle
(``shared.bmc.access.tls_policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.bmc.access import tls_policy
from shared.core.crypto import CredentialCipher
from shared.models import AuthProfile, Credential, Node
from shared.redfish import (
    AuthenticationFailed,
    CertificateMismatch,
    ComputerSystem,
    RedfishPool,
    read_systems,
)


@dataclass(frozen=True)
class LoggedIn:
    credential_id: int
    systems: list[ComputerSystem]


class RegistrationRefused(Exception):
    """A failure that retrying cannot fix; the message is shown to the operator, ``cause`` is
    its failure class (``shared.bmc.failures.failure_class``'s names)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


async def log_in_and_read_systems(
    pool: RedfishPool,
    cipher: CredentialCipher,
    node: Node,
    profile: AuthProfile,
    credentials: Sequence[Credential],
) -> LoggedIn:
    """The first credential the BMC accepts, and its systems.

    Raises ``RegistrationRefused`` when no credential is accepted or the certificate is wrong;
    busy and unreachable BMCs raise the client's ``BmcBusy`` / ``BmcUnreachable`` for the caller
    to retry.
    """
    if not credentials:
        raise RegistrationRefused(f"auth profile {profile.id} has no credentials", "configuration")
    tls = tls_policy(profile, node)
    for credential in credentials:
        assert credential.id is not None
        password = cipher.decrypt(credential.password_encrypted)
        try:
            async with pool.session(
                node.url, credential.username, password, tls, vendor=node.vendor
            ) as bmc:
                return LoggedIn(credential.id, await read_systems(bmc))
        except AuthenticationFailed:
            continue
        except CertificateMismatch as exc:
            if tls.fingerprint and tls.fingerprint == node.fingerprint:
                raise RegistrationRefused(
                    f"TLS certificate of {node.ip} changed since discovery; re-scan the node "
                    "to accept the new certificate, or set the profile's TLS policy",
                    "certificate",
                ) from exc
            raise RegistrationRefused(
                f"TLS certificate of {node.ip} rejected by the policy of auth profile "
                f"{profile.id} ({tls.description})",
                "certificate",
            ) from exc
    raise RegistrationRefused(
        f"no credential of auth profile {profile.id} accepted by {node.ip} "
        f"({len(credentials)} tried)",
        "credentials_refused",
    )

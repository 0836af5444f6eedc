"""Logging in to a node's BMC with an auth profile: credentials in order, one at a time.

One attempt at a time matters: BMCs lock accounts after a few failures, and a burst of parallel
wrong passwords is exactly what triggers that. The TLS policy is ``shared.bmc.access``'s: the
profile's own, or the node's trusted certificate (the one discovery recorded, before the first
registration). A certificate the policy refuses ends the attempt at the TLS handshake, before
any credential is sent, and no further credential is tried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.bmc.access import (
    BmcWorkRefused,
    changed_certificate,
    tls_policy,
    trust_on_first_use,
)
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
    # The certificate the successful login talked to (None only over plain HTTP).
    certificate: str | None


class RegistrationRefused(Exception):
    """A failure that retrying cannot fix; the message is shown to the operator, ``cause`` is
    its failure class (``shared.bmc.failures.failure_class``'s names)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class CertificateChanged(Exception):
    """The BMC presented a certificate other than the node's trusted one (``presented``)."""

    def __init__(self, presented: str) -> None:
        super().__init__(f"the BMC presents a certificate with SHA-256 {presented}")
        self.presented = presented


async def log_in_and_read_systems(
    pool: RedfishPool,
    cipher: CredentialCipher,
    node: Node,
    profile: AuthProfile,
    credentials: Sequence[Credential],
) -> LoggedIn:
    """The first credential the BMC accepts, and its systems.

    Raises ``CertificateChanged`` when the BMC no longer presents the node's trusted
    certificate, ``RegistrationRefused`` when no credential is accepted or the certificate is
    otherwise wrong; busy and unreachable BMCs raise the client's ``BmcBusy`` /
    ``BmcUnreachable`` for the caller to retry.
    """
    if not credentials:
        raise RegistrationRefused(f"auth profile {profile.id} has no credentials", "configuration")
    try:
        tls = tls_policy(profile, node)
    except BmcWorkRefused as exc:
        raise RegistrationRefused(str(exc), exc.cause) from None
    for credential in credentials:
        assert credential.id is not None
        password = cipher.decrypt(credential.password_encrypted)
        try:
            async with pool.session(
                node.url, credential.username, password, tls, vendor=node.vendor
            ) as bmc:
                systems = await read_systems(bmc)
                return LoggedIn(credential.id, systems, bmc.peer_fingerprint)
        except AuthenticationFailed:
            continue
        except CertificateMismatch as exc:
            # The handshake failed before any credential was sent; trying the next one would
            # only offer it to the same impostor.
            presented = changed_certificate(profile, node, exc)
            if presented is not None:
                raise CertificateChanged(presented) from exc
            if trust_on_first_use(profile) and node.trusted_fingerprint is None:
                raise RegistrationRefused(
                    f"TLS certificate of {node.ip} changed since discovery; scan the node "
                    "again, check the certificate it presents, then register it",
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

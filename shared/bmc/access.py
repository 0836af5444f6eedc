"""How Racksmith reaches a node's BMC: which TLS policy applies, whether BMC work may run, and
what a server's BMC work needs (address, the credential that registered the node, the TLS
policy, the system's path).

The trust model. An auth profile may bring its own TLS policy — a pinned fingerprint, a CA
bundle, or verification against the system trust store — and then that policy alone decides, as
for any TLS client. Otherwise a node's certificate is trusted on first use: its first
registration pins the certificate discovery recorded, the certificate that registration's login
actually talked to becomes the node's ``trusted_fingerprint``, and every later connection
(registration, inventory, jobs) pins that. Scans only record what they see (``fingerprint``);
they never move the trust. A certificate other than the trusted one — seen by a scan or at a
connection — puts the node in ``certificate_changed``, and no BMC work runs for it (no
credential is sent) until a superuser accepts the certificate it presents
(``shared.lifecycle.node.accept_certificate``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import AuthProfile, Credential, Node, NodeStatus, Server
from shared.redfish import CertificateMismatch, TlsPolicy


class BmcWorkRefused(Exception):
    """BMC work must not run for this node now; the message says why, for the operator, and
    ``cause`` is its failure class (``shared.bmc.failures.failure_class``'s names)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def has_own_policy(profile: AuthProfile | None) -> bool:
    return profile is not None and bool(
        profile.tls_fingerprint or profile.ca_bundle or profile.verify_tls
    )


def trust_on_first_use(profile: AuthProfile | None) -> bool:
    """Whether the node's own trusted certificate (not the profile) decides."""
    return not has_own_policy(profile)


def tls_policy(profile: AuthProfile, node: Node) -> TlsPolicy:
    """The policy for connecting to ``node``'s BMC; raises ``BmcWorkRefused`` if it may not."""
    if node.status == NodeStatus.certificate_changed:
        raise BmcWorkRefused(node.error or untrusted_reason(node), "certificate")
    if has_own_policy(profile):
        return TlsPolicy(
            verify=profile.verify_tls,
            ca_bundle=profile.ca_bundle,
            fingerprint=profile.tls_fingerprint,
        )
    pin = node.trusted_fingerprint or node.fingerprint
    if pin is None:
        # An unpinned connection would send the password to whoever answers.
        raise BmcWorkRefused(
            f"no TLS certificate is known for {node.ip}:{node.port}; scan its range first",
            "configuration",
        )
    return TlsPolicy(fingerprint=pin)


def changed_certificate(
    profile: AuthProfile | None, node: Node, error: CertificateMismatch
) -> str | None:
    """The certificate the BMC presented, if ``error`` means the node's trusted certificate
    changed (rather than a profile's own policy refusing it)."""
    if trust_on_first_use(profile) and node.trusted_fingerprint is not None:
        return error.presented
    return None


def untrusted_reason(node: Node) -> str:
    return (
        f"TLS certificate of {node.ip}:{node.port} changed: the BMC no longer presents the "
        f"trusted certificate (SHA-256 {node.trusted_fingerprint}); `fingerprint` is the one it "
        "presents now. No credential is sent to it until a superuser has checked the BMC and "
        f"accepted the new certificate (POST /api/node/{node.id}/accept_certificate/)."
    )


@dataclass(frozen=True)
class ServerAccess:
    """A server's BMC as its work reaches it, read in one transaction."""

    node: Node
    profile: AuthProfile
    credential: Credential
    system_path: str
    tls: TlsPolicy

    @property
    def base_url(self) -> str:
        return self.node.url

    @property
    def bmc(self) -> str:
        """How messages name the BMC (its address)."""
        return self.node.ip

    def changed_certificate(self, error: CertificateMismatch) -> str | None:
        """``changed_certificate`` for this server's node."""
        return changed_certificate(self.profile, self.node, error)


async def server_access(session: AsyncSession, server: Server) -> ServerAccess:
    """What BMC work on ``server`` needs; raises ``BmcWorkRefused`` when it may not run
    (no working credential, no known certificate, or the certificate changed) — before anything,
    least of all a credential, is sent to the BMC."""
    found = (
        await session.exec(
            select(Node, AuthProfile, Credential)
            .join(AuthProfile, col(AuthProfile.id) == col(Node.auth_profile_id))
            .join(Credential, col(Credential.id) == col(Node.credential_id))
            .where(col(Node.id) == server.node_id)
        )
    ).first()
    if found is None:
        raise BmcWorkRefused(
            "no working BMC credential for this server; register its node again", "configuration"
        )
    node, profile, credential = found
    return ServerAccess(node, profile, credential, server.system_path, tls_policy(profile, node))

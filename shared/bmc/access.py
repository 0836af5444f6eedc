"""How Racksmith reaches a node's BMC: which TLS policy applies, and what a server's BMC work
needs (address, the credential that registered the node, the TLS policy, the system's path).

The default trusts the certificate discovery recorded for the node (so a BMC whose certificate
changed since discovery is refused) unless the node's auth profile pins its own fingerprint or
verifies against a CA bundle. Registration and every later BMC operation use the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import AuthProfile, Credential, Node, Server
from shared.redfish import TlsPolicy


def tls_policy(profile: AuthProfile, node: Node) -> TlsPolicy:
    if profile.tls_fingerprint or profile.ca_bundle or profile.verify_tls:
        return TlsPolicy(
            verify=profile.verify_tls,
            ca_bundle=profile.ca_bundle,
            fingerprint=profile.tls_fingerprint,
        )
    return TlsPolicy(fingerprint=node.fingerprint)


class NoAccess(Exception):
    """The server's BMC cannot be reached as things stand (shown to the operator)."""


@dataclass(frozen=True)
class ServerAccess:
    base_url: str
    username: str
    password_encrypted: str
    tls: TlsPolicy
    system_path: str
    bmc: str  # how messages name the BMC (its address)


async def server_access(session: AsyncSession, server: Server) -> ServerAccess:
    """What BMC work on ``server`` needs; `NoAccess` with the reason when something is missing."""
    found = (
        await session.exec(
            select(Node, AuthProfile, Credential)
            .join(AuthProfile, col(AuthProfile.id) == col(Node.auth_profile_id))
            .join(Credential, col(Credential.id) == col(Node.credential_id))
            .where(col(Node.id) == server.node_id)
        )
    ).first()
    if found is None:
        raise NoAccess("no working BMC credential for this server; register its node again")
    node, profile, credential = found
    return ServerAccess(
        base_url=node.url,
        username=credential.username,
        password_encrypted=credential.password_encrypted,
        tls=tls_policy(profile, node),
        system_path=server.system_path,
        bmc=node.ip,
    )

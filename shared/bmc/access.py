"""How Racksmith reaches a node's BMC: which TLS policy applies.

The default trusts the certificate discovery recorded for the node (so a BMC whose certificate
changed since discovery is refused) unless the node's auth profile pins its own fingerprint or
verifies against a CA bundle. Registration and every later BMC operation use the same rule.
"""

from __future__ import annotations

from shared.models import AuthProfile, Node
from shared.redfish import TlsPolicy


def tls_policy(profile: AuthProfile, node: Node) -> TlsPolicy:
    if profile.tls_fingerprint or profile.ca_bundle or profile.verify_tls:
        return TlsPolicy(
            verify=profile.verify_tls,
            ca_bundle=profile.ca_bundle,
            fingerprint=profile.tls_fingerprint,
        )
    return TlsPolicy(fingerprint=node.fingerprint)

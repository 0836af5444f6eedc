"""The signature a receiver checks: HMAC-SHA256 over a timestamp and the exact body bytes.

``Racksmith-Signature: t=<unix seconds>,v1=<hex digest of "<t>." + body>``. The timestamp is
signed too, so a receiver that rejects old timestamps also rejects a replayed request; ``v1``
names the scheme, so another can be added beside it without breaking receivers.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Racksmith-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"

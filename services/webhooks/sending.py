"""One HTTP attempt at a delivery: the CloudEvents HTTP binding, the signature, the verdict.

Structured mode sends the CloudEvent itself (``application/cloudevents+json``); binary mode sends
its ``data`` with the other attributes as ``ce-*`` headers. Both carry ``Racksmith-Signature``
over the exact body bytes and ``Racksmith-Delivery`` (the delivery log's id, the same on every
attempt). 2xx is delivered; anything else — a redirect (never followed), an error status, a
timeout, a refused or forbidden connection — is a failed attempt, with a reason a person can act on.
A reason is the status code or a class of error, never what the target sent: whatever answers
at a webhook's address (a non-HTTP service echoing its banner, an internal page) must not come
back through the delivery log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from services.webhooks import signing
from shared.core.targets import (
    GuardedResolver,
    TargetError,
    TargetPolicy,
    TargetRefusedError,
    check_literal,
)
from shared.models.webhooks import ContentMode

USER_AGENT = "Racksmith-Webhooks/0.1"
DELIVERY_HEADER = "Racksmith-Delivery"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
# CloudEvents attributes that travel as headers in binary mode (`datacontenttype` becomes
# Content-Type, `data` the body).
BINARY_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time")
RETRY_AFTER_STATUSES = {429, 503}


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    # What the receiver asked for with `Retry-After` (on 429/503), in seconds.
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode(event: Mapping[str, Any], mode: ContentMode) -> tuple[bytes, dict[str, str]]:
    """Body and content headers of ``event`` in ``mode``."""
    if mode == ContentMode.structured:
        return _json(event), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    headers = {f"ce-{name}": str(event[name]) for name in BINARY_ATTRIBUTES if event.get(name)}
    headers["Content-Type"] = str(event.get("datacontenttype") or "application/json")
    return _json(event.get("data", {})), headers


def signed_request(
    event: Mapping[str, Any], mode: ContentMode, secret: str, delivery_id: int, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    body, headers = encode(event, mode)
    headers |= {
        signing.HEADER: signing.sign(secret, body, timestamp),
        DELIVERY_HEADER: str(delivery_id),
        "User-Agent": USER_AGENT,
    }
    return body, headers


def client(policy: TargetPolicy, *, timeout_s: float, limit: int) -> aiohttp.ClientSession:
    """The HTTP client deliveries go through: every connection resolved by ``GuardedResolver``,
    one deadline per attempt, no cookies, and no proxy from the environment (a proxy would
    connect on our behalf to addresses the policy never saw)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _verdict(response: aiohttp.ClientResponse) -> Outcome:
    status = response.status
    if 200 <= status < 300:
        return Outcome(status_code=status)
    if 300 <= status < 400:
        return Outcome(
            status_code=status,
            error=f"HTTP {status}: a redirect, refused (webhooks never follow redirects; use "
            "the final URL).",
        )
    retry_after = (
        _retry_after(response.headers.get("Retry-After"))
        if status in RETRY_AFTER_STATUSES
        else None
    )
    return Outcome(status_code=status, error=f"HTTP {status}", retry_after_s=retry_after)


async def attempt(
    http: aiohttp.ClientSession,
    policy: TargetPolicy,
    url: str,
    event: Mapping[str, Any],
    mode: ContentMode,
    secret: str,
    delivery_id: int,
) -> Outcome:
    """Send ``event`` once. Never raises for anything the receiver or the network does."""
    try:
        # Addresses in the URL are not resolved, so the resolver never sees them: check here.
        check_literal(url, policy)
    except TargetError as exc:
        return Outcome(error=str(exc))
    body, headers = signed_request(event, mode, secret, delivery_id, int(time.time()))
    try:
        async with http.post(url, data=body, headers=headers, allow_redirects=False) as response:
            return _verdict(response)
    except TimeoutError:
        return Outcome(error=f"No answer within {http.timeout.total} s.")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, TargetRefusedError):
            return Outcome(error=str(exc.os_error))
        return Outcome(error=f"Cannot connect: {exc.os_error.strerror or 'connection failed'}.")
    except aiohttp.ClientResponseError as exc:
        # Raised for answers that are not HTTP; its message quotes them.
        return Outcome(error=f"Not an HTTP answer ({type(exc).__name__}).")
    except aiohttp.ClientError as exc:
        return Outcome(error=f"{type(exc).__name__}.")

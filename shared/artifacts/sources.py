"""Downloading an artifact from its ``source_url``, streamed, under the outbound-URL policy.

Every connection goes through ``GuardedResolver`` with
``RACKSMITH_ARTIFACT_SOURCE_ALLOWED_NETWORKS``: a source URL is an address someone typed, and
unchecked it reaches metadata services, the database or NATS. Vendor download links redirect (to
mirrors, CDNs), so redirects are followed — by hand, each hop checked like the first, since a
redirect to a literal address would skip the resolver.

Failures come in two kinds: ``SourceRefusedError`` (the URL is wrong or forbidden — 4xx, the
policy, too many redirects: retrying cannot help) and ``SourceUnavailableError`` (the server or
the network failed — worth retrying later). A reason names the status code or a class of error,
never what the source sent (a reason phrase, a non-HTTP service's banner): whatever answers at an
address someone typed must not come back through the catalog.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urljoin

import aiohttp

from shared.artifacts.store import READ_CHUNK
from shared.core.targets import (
    GuardedResolver,
    TargetError,
    TargetPolicy,
    TargetRefusedError,
    check_literal,
)

MAX_REDIRECTS = 5
USER_AGENT = "Racksmith-Fetcher/1"
# Statuses a later attempt may get past: the server is busy or broken for now.
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


class SourceRefusedError(Exception):
    """The source cannot be fetched as given; the message says why (for `status_reason`)."""


class SourceUnavailableError(Exception):
    """The source failed this time; a later attempt may succeed."""


def _client(policy: TargetPolicy, timeout_s: float) -> aiohttp.ClientSession:
    # No total deadline (a 16 GiB image takes as long as it takes) but a bounded connect and a
    # bounded silence; no proxy from the environment (it would connect where the policy never
    # looked); no cookies.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=4),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        # The stored bytes must be the file itself, whose SHA-256 was declared.
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        auto_decompress=False,
    )


@asynccontextmanager
async def download(
    url: str, policy: TargetPolicy, timeout_s: float
) -> AsyncIterator[AsyncIterator[bytes]]:
    """The body of ``url`` as a stream of chunks (after following redirects)."""
    async with _client(policy, timeout_s) as session:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_literal(target, policy)
            except TargetError as exc:
                raise SourceRefusedError(str(exc)) from None
            try:
                response = await session.get(target, allow_redirects=False)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, TargetRefusedError):
                    raise SourceRefusedError(str(exc.os_error)) from None
                reason = exc.os_error.strerror or "connection failed"
                raise SourceUnavailableError(f"Cannot connect to {exc.host}: {reason}.") from None
            except TimeoutError:
                raise SourceUnavailableError(f"No answer from {target} in time.") from None
            except aiohttp.ClientError as exc:
                raise SourceUnavailableError(f"Download failed ({type(exc).__name__}).") from None
            async with response:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise SourceRefusedError(f"HTTP {response.status} without a Location.")
                    target = urljoin(target, location)
                    continue
                if response.status == 200:
                    yield _body(response)
                    return
                message = f"HTTP {response.status} from {target}"
                if response.status in _TRANSIENT:
                    raise SourceUnavailableError(message + ".")
                raise SourceRefusedError(message + ".")
        raise SourceRefusedError(f"More than {MAX_REDIRECTS} redirects from {url}.")


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            yield chunk
    except TimeoutError:
        raise SourceUnavailableError("Download interrupted: the source went silent.") from None
    except aiohttp.ClientError as exc:
        raise SourceUnavailableError(f"Download interrupted ({type(exc).__name__}).") from None
    if (
        response.content_length is not None
        and response.content.total_bytes != response.content_length
    ):
        raise SourceUnavailableError("Download ended early (fewer bytes than Content-Length).")

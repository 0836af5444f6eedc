"""The session cache a job's steps share: one login reused between steps, and never a session
used under a certificate other than the one it was opened under."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redfish_helpers import PASSWORD, USERNAME, lab_config, peer_fingerprint

from bmclab import Lab
from shared.redfish import CertificateMismatch, RedfishPool, SessionCache, TlsPolicy
from tests.lab_net import LAB_NET

ROOT = "/redfish/v1/"


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(lab_config(f"{LAB_NET}.174.0/24", count=1)) as running:
        yield running


@pytest.fixture
async def cache() -> AsyncIterator[SessionCache]:
    sessions = SessionCache(RedfishPool())
    yield sessions
    await sessions.close()


async def test_borrowers_of_one_bmc_share_one_login(lab: Lab, cache: SessionCache) -> None:
    bmc = lab.bmc(0)
    pin = TlsPolicy(fingerprint=await peer_fingerprint(bmc.address, bmc.port))
    for _ in range(3):
        async with cache.session(bmc.url, USERNAME, PASSWORD, pin) as session:
            assert (await session.get(ROOT))["@odata.id"].rstrip("/") == ROOT.rstrip("/")
    assert (bmc.total_logins, bmc.open_sessions) == (1, 1)
    await cache.close()
    assert bmc.open_sessions == 0


async def test_a_certificate_accepted_anew_ends_the_sessions_of_the_old_one(
    lab: Lab, cache: SessionCache
) -> None:
    """The BMC's certificate changed and a superuser accepted the new one: the next borrower,
    with the new pin, gets a new login; the session opened under the old pin is logged out and
    never handed out again, even to a borrower still holding the old pin."""
    bmc = lab.bmc(0)
    old = TlsPolicy(fingerprint=await peer_fingerprint(bmc.address, bmc.port))
    async with cache.session(bmc.url, USERNAME, PASSWORD, old) as session:
        await session.get(ROOT)
        first = session
    lab.impersonate(0)
    new = TlsPolicy(fingerprint=await peer_fingerprint(bmc.address, bmc.port))
    assert new != old
    async with cache.session(bmc.url, USERNAME, PASSWORD, new) as session:
        assert session is not first
        await session.get(ROOT)
    # Only the accepted certificate's session is left on the BMC (the old one was logged out
    # over its own, still trusted, connection).
    assert (bmc.total_logins, bmc.open_sessions) == (2, 1)
    with pytest.raises(CertificateMismatch):
        async with cache.session(bmc.url, USERNAME, PASSWORD, old) as session:
            await session.get(ROOT)
    assert bmc.total_logins == 2


async def test_a_cached_session_meeting_another_certificate_is_dropped(
    lab: Lab, cache: SessionCache
) -> None:
    """An impostor takes the address while a session is cached: the session's next new
    connection fails the pinned certificate, the session is dropped, and the next borrower's
    login stops at the handshake — nothing, least of all the password, reaches the impostor."""
    bmc = lab.bmc(0)
    pin = TlsPolicy(fingerprint=await peer_fingerprint(bmc.address, bmc.port))
    async with cache.session(bmc.url, USERNAME, PASSWORD, pin) as session:
        await session.get(ROOT)
        cached = session
    lab.impersonate(0)
    # Concurrent requests need new connections, which meet the impostor's certificate.
    with pytest.raises(CertificateMismatch):
        async with cache.session(bmc.url, USERNAME, PASSWORD, pin) as session:
            assert session is cached
            await session.get_many([ROOT, f"{ROOT}Systems", f"{ROOT}Chassis", f"{ROOT}Managers"])
    with pytest.raises(CertificateMismatch):
        async with cache.session(bmc.url, USERNAME, PASSWORD, pin) as session:
            pytest.fail("a session was handed out past a certificate mismatch")
    assert bmc.impostor_received == []
    assert bmc.total_logins == 1


async def test_concurrent_reaps_log_out_idle_sessions_once() -> None:
    """Each borrow reaps idle sessions, and a logout awaits: two borrows at once used to both
    reap the same idle entries, the second failing with a KeyError (a deployment step crashed)."""
    async with Lab(lab_config(f"{LAB_NET}.178.0/24", count=2)) as lab:
        cache = SessionCache(RedfishPool())
        try:
            for bmc in lab.bmcs:
                pin = TlsPolicy(fingerprint=await peer_fingerprint(bmc.address, bmc.port))
                async with cache.session(bmc.url, USERNAME, PASSWORD, pin) as session:
                    await session.get(ROOT)
            assert [bmc.open_sessions for bmc in lab.bmcs] == [1, 1]
            cache.idle_s = 0.0  # both are idle now
            await asyncio.gather(cache._reap(), cache._reap())
            assert [bmc.open_sessions for bmc in lab.bmcs] == [0, 0]
        finally:
            await cache.close()

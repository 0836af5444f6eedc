"""Failure handling against the lab's faults, auth and TLS policies.

Every expected error goes through `expect`, which also checks that neither the password nor
the session token shows up in the exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import IntEnum

import pytest
from aiohttp import web
from redfish_helpers import PASSWORD, expect, lab_config, open_session, peer_fingerprint

from bmclab import Lab
from bmclab.certs import CertificateAuthority
from bmclab.server import BmcHttp, Reply
from shared.redfish import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ClientLimits,
    ComputerSystem,
    ProtocolError,
    RedfishPool,
    ResourceNotFound,
    TlsPolicy,
    read_systems,
)
from tests.lab_net import LAB_NET

NETWORK = f"{LAB_NET}.171.0/24"
NOBODY = f"https://{LAB_NET}.171.250:8443"  # in the lab's network, nothing listens there


class B(IntEnum):
    """One BMC per scenario, so faults and counters never interfere."""

    BADCREDS = 0
    BUSY = 1
    HANG = 2
    REDIRECT = 3
    OVERSIZED = 4
    MALFORMED = 5
    TLSFAIL = 6
    DRIP = 7
    TLS = 8
    WRONG_PASSWORD = 9
    SESSION_LIMIT = 10
    SESSION_DROP = 11
    SESSION_500 = 12


FAULTS = {
    B.BADCREDS: "badcreds",
    B.BUSY: "busy",
    B.HANG: "hang",
    B.REDIRECT: "redirect",
    B.OVERSIZED: "oversized",
    B.MALFORMED: "malformed",
    B.TLSFAIL: "tlsfail",
    B.DRIP: "drip:5",
    B.SESSION_DROP: "sessiondrop",
}


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    faults = ",".join(f"{kind}@{index.value}" for index, kind in FAULTS.items())
    config = lab_config(NETWORK, count=len(B), flavours=("dell",), faults=faults, session_limit=3)
    async with Lab(config) as running:
        yield running


def url(lab: Lab, which: B) -> str:
    return lab.manifest[which].url


def no_session_left(lab: Lab, which: B) -> None:
    assert lab.bmc(which.value).open_sessions == 0


async def test_bad_credentials(lab: Lab) -> None:
    pool = RedfishPool()
    error = await expect(
        AuthenticationFailed, lambda: read_via(pool, url(lab, B.BADCREDS)), match="refused"
    )
    assert error.status == 401
    no_session_left(lab, B.BADCREDS)


async def test_wrong_password(lab: Lab) -> None:
    wrong = "not-the-" + PASSWORD
    bmc = lab.bmc(B.WRONG_PASSWORD.value)
    pool = RedfishPool()
    await expect(
        AuthenticationFailed,
        lambda: read_via(pool, url(lab, B.WRONG_PASSWORD), password=wrong),
        wrong,
        match=bmc.address,
    )
    assert (bmc.failed_logins, bmc.total_logins, bmc.open_sessions) == (1, 0, 0)


async def test_busy(lab: Lab) -> None:
    error = await expect(
        BmcBusy, lambda: read_via(RedfishPool(), url(lab, B.BUSY)), match="503 (busy)"
    )
    assert error.status == 503 and error.retry_after == 5
    no_session_left(lab, B.BUSY)


async def test_session_table_full_falls_back_to_basic(lab: Lab) -> None:
    """Login answering 503 (session limit 3 in this lab, as iDRAC's table of ~8 fills up with
    other tools' sessions): HTTP Basic needs no session, so the read still works; nothing
    leaks."""
    bmc = lab.bmc(B.SESSION_LIMIT.value)
    holders = [open_session(RedfishPool(), url(lab, B.SESSION_LIMIT)) for _ in range(3)]
    for holder in holders:
        await holder.__aenter__()
    try:
        pool = RedfishPool()
        async with open_session(pool, url(lab, B.SESSION_LIMIT)) as session:
            assert session.auth_mode == "basic"
            assert len(await read_systems(session)) == 1
    finally:
        for holder in holders:
            await holder.__aexit__(None, None, None)
    assert (bmc.max_sessions, bmc.open_sessions) == (3, 0)


async def test_a_login_that_drops_the_connection_falls_back_to_basic_once(lab: Lab) -> None:
    """A BMC emulator written by others closes the connection on POST .../Sessions: Racksmith
    reads it with HTTP Basic, as sushy does, and remembers that for the BMC."""
    bmc = lab.bmc(B.SESSION_DROP.value)
    pool = RedfishPool()
    async with open_session(pool, url(lab, B.SESSION_DROP)) as session:
        assert session.auth_mode == "basic"
        assert len(await read_systems(session)) == 1
    assert pool.uses_basic(session.base_url)
    served = bmc.requests_served
    async with open_session(pool, url(lab, B.SESSION_DROP)) as again:
        assert again.auth_mode == "basic"
    # Service root and the Basic probe: the failing login is not tried again.
    assert bmc.requests_served - served == 2
    assert (bmc.total_logins, bmc.open_sessions) == (0, 0)
    # Refused credentials are still refused, never retried as something else.
    await expect(
        AuthenticationFailed,
        lambda: read_via(RedfishPool(), url(lab, B.SESSION_DROP), password="wrong-password-1"),
        "wrong-password-1",
    )


@pytest.mark.parametrize("status", [404, 405, 500, 501])
async def test_a_login_answered_with_an_error_falls_back_to_basic(
    lab: Lab, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    bmc = lab.bmc(B.SESSION_500.value)
    login = BmcHttp._login

    async def failing_login(self: BmcHttp, request: web.BaseRequest) -> Reply:
        if self.bmc is bmc:
            return Reply.error(status, "Sessions are not available here")
        return await login(self, request)

    monkeypatch.setattr(BmcHttp, "_login", failing_login)
    async with open_session(RedfishPool(), url(lab, B.SESSION_500)) as session:
        assert session.auth_mode == "basic"
        assert len(await read_systems(session)) == 1


async def test_hang_times_out(lab: Lab) -> None:
    pool = RedfishPool(ClientLimits(connect_timeout=0.2, read_timeout=0.2))
    await expect(
        BmcUnreachable, lambda: read_via(pool, url(lab, B.HANG)), match="TCP/TLS connection"
    )


async def test_drip_read_times_out(lab: Lab) -> None:
    pool = RedfishPool(ClientLimits(connect_timeout=2, read_timeout=0.2))
    await expect(BmcUnreachable, lambda: read_via(pool, url(lab, B.DRIP)), match="did not answer")


async def test_connection_refused() -> None:
    await expect(BmcUnreachable, lambda: read_via(RedfishPool(), NOBODY), match="cannot connect")


async def test_tls_handshake_failure(lab: Lab) -> None:
    await expect(
        BmcUnreachable, lambda: read_via(RedfishPool(), url(lab, B.TLSFAIL)), match="TLS handshake"
    )


async def test_redirect_off_host(lab: Lab) -> None:
    error = await expect(
        ProtocolError,
        lambda: read_via(RedfishPool(), url(lab, B.REDIRECT)),
        match="off the BMC to https://login.redirect.invalid",
    )
    assert error.status == 302


async def test_oversized_body(lab: Lab) -> None:
    pool = RedfishPool(ClientLimits(max_body_bytes=64 * 1024))
    await expect(ProtocolError, lambda: read_via(pool, url(lab, B.OVERSIZED)), match="limit")


async def test_body_over_small_cap_on_healthy_bmc(lab: Lab) -> None:
    pool = RedfishPool(ClientLimits(max_body_bytes=100))
    await expect(ProtocolError, lambda: read_via(pool, url(lab, B.TLS)), match="100-byte limit")
    no_session_left(lab, B.TLS)


async def test_malformed_json(lab: Lab) -> None:
    await expect(
        ProtocolError, lambda: read_via(RedfishPool(), url(lab, B.MALFORMED)), match="not JSON"
    )


async def test_pinned_fingerprint(lab: Lab) -> None:
    entry = lab.manifest[B.TLS]
    right = await peer_fingerprint(entry.address, entry.port)
    colon_form = ":".join(right[i : i + 2] for i in range(0, 64, 2)).upper()
    for pin in (right, colon_form):
        systems = await read_via(RedfishPool(), entry.url, TlsPolicy(fingerprint=pin))
        assert [s.id for s in systems] == list(entry.system_ids)
    wrong = "ab" * 32
    error = await expect(
        CertificateMismatch,
        lambda: read_via(RedfishPool(), entry.url, TlsPolicy(fingerprint=wrong)),
        match=right,
    )
    assert wrong in str(error)
    no_session_left(lab, B.TLS)


async def test_ca_bundle(lab: Lab) -> None:
    entry = lab.manifest[B.TLS]
    trusted = TlsPolicy(ca_bundle=lab.ca_cert_pem.decode())
    systems = await read_via(RedfishPool(), entry.url, trusted)
    assert [s.id for s in systems] == list(entry.system_ids)
    stranger = TlsPolicy(ca_bundle=CertificateAuthority.generate().cert_pem.decode())
    await expect(
        CertificateMismatch,
        lambda: read_via(RedfishPool(), entry.url, stranger),
        match="CA bundle",
    )
    # verify=True alone trusts only the system store, which never signed a lab certificate.
    await expect(
        CertificateMismatch, lambda: read_via(RedfishPool(), entry.url, TlsPolicy(verify=True))
    )
    no_session_left(lab, B.TLS)


async def test_missing_resource(lab: Lab) -> None:
    async with open_session(RedfishPool(), url(lab, B.TLS)) as session:
        error = await expect(
            ResourceNotFound, lambda: session.get("/redfish/v1/Nothing/Here"), match="has no"
        )
    assert error.status == 404
    assert isinstance(error, ProtocolError)
    no_session_left(lab, B.TLS)


def test_tls_policy_rejects_bad_fingerprint() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        TlsPolicy(fingerprint="abc")


async def read_via(
    pool: RedfishPool, base_url: str, tls: TlsPolicy | None = None, *, password: str = PASSWORD
) -> list[ComputerSystem]:
    async with open_session(pool, base_url, password=password, tls=tls) as session:
        return list(await read_systems(session))

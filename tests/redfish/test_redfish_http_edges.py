"""HTTP shapes the BMC lab does not produce, served by a tiny plain-HTTP app on loopback:
same-host redirects, redirect loops, bodies without Content-Length, non-object JSON, and a
login answered with an absolute Location."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from redfish_helpers import PASSWORD, USERNAME, expect, open_session

from shared.redfish import ClientLimits, ProtocolError, RedfishPool
from tests.lab_net import LAB_NET

HOST = f"{LAB_NET}.174.1"
TOKEN = "edge-token-0123456789abcdef"


def make_app(base: list[str], deleted: list[str]) -> web.Application:
    async def root(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": "/redfish/v1/",
                "RedfishVersion": "1.6.0",
                "Systems": {"@odata.id": "/redfish/v1/Systems"},
                "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
            }
        )

    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        if (body.get("UserName"), body.get("Password")) != (USERNAME, PASSWORD):
            return web.json_response({}, status=401)
        # Absolute Location on the BMC's own origin, as some firmware sends it.
        location = f"{base[0]}/redfish/v1/SessionService/Sessions/7"
        return web.json_response(
            {"@odata.id": "/redfish/v1/SessionService/Sessions/7"},
            status=201,
            headers={"X-Auth-Token": TOKEN, "Location": location},
        )

    async def logout(request: web.Request) -> web.Response:
        deleted.append(request.headers.get("X-Auth-Token", ""))
        return web.Response(status=204)

    def authorised(request: web.Request) -> None:
        if request.headers.get("X-Auth-Token") != TOKEN:
            raise web.HTTPUnauthorized()

    async def systems(request: web.Request) -> web.Response:
        authorised(request)
        # Same-host redirect with a relative Location (bmcweb-style trailing-slash redirect).
        raise web.HTTPFound("/redfish/v1/Systems/")

    async def systems_slash(request: web.Request) -> web.Response:
        authorised(request)
        return web.json_response({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]})

    async def loop(request: web.Request) -> web.Response:
        authorised(request)
        raise web.HTTPFound(f"/redfish/v1/Loop{int(request.match_info['n']) + 1}")

    async def array(request: web.Request) -> web.Response:
        authorised(request)
        return web.json_response([1, 2, 3])

    async def chunked(request: web.Request) -> web.StreamResponse:
        authorised(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()  # no Content-Length: the cap must count bytes
        await response.prepare(request)
        await response.write(b'{"Padding": "' + b"A" * 200_000 + b'"}')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/redfish/v1/", root)
    app.router.add_post("/redfish/v1/SessionService/Sessions", login)
    app.router.add_delete("/redfish/v1/SessionService/Sessions/7", logout)
    app.router.add_get("/redfish/v1/Systems", systems)
    app.router.add_get("/redfish/v1/Systems/", systems_slash)
    app.router.add_get("/redfish/v1/Loop{n:\\d+}", loop)
    app.router.add_get("/redfish/v1/Array", array)
    app.router.add_get("/redfish/v1/Chunked", chunked)
    return app


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    base: list[str] = []
    deleted: list[str] = []
    runner = web.AppRunner(make_app(base, deleted), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    base.append(f"http://{HOST}:{port}")
    yield base[0], deleted
    await runner.cleanup()


async def test_same_host_redirects_and_absolute_location(server: tuple[str, list[str]]) -> None:
    url, deleted = server
    async with open_session(RedfishPool(), url) as session:
        assert await session.members("/redfish/v1/Systems") == ["/redfish/v1/Systems/1"]
        await expect(
            ProtocolError, lambda: session.get("/redfish/v1/Loop0"), TOKEN, match="more than 3"
        )
        await expect(
            ProtocolError, lambda: session.get("/redfish/v1/Array"), TOKEN, match="not an object"
        )
    assert deleted[-1] == TOKEN  # logged out at the absolute Location


async def test_cap_counts_bytes_without_content_length(server: tuple[str, list[str]]) -> None:
    url, _ = server
    pool = RedfishPool(ClientLimits(max_body_bytes=100_000))
    async with open_session(pool, url) as session:
        await expect(
            ProtocolError, lambda: session.get("/redfish/v1/Chunked"), TOKEN, match="limit"
        )
    bigger = RedfishPool(ClientLimits(max_body_bytes=300_000))
    async with open_session(bigger, url) as session:
        assert len((await session.get("/redfish/v1/Chunked"))["Padding"]) == 200_000

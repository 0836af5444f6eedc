"""Running worker kinds: attach their routers to a runtime's broker, serve health probes."""

from __future__ import annotations

from aiohttp import web

from services.fetcher.handlers import router as fetcher_router
from services.inventory.handlers import router as inventory_router
from services.inventory.schedule import schedule_forever
from services.jobs.handlers import router as jobs_router
from services.jobs.watchdog import watch_forever
from services.registrar.handlers import router as registrar_router
from services.scanner.handlers import router as scanner_router
from services.webhooks import worker as webhooks
from shared.messaging.consumer import CommandRouter
from shared.messaging.streams import WEBHOOKS
from shared.observability import sampling
from shared.platform.runtime import Runtime

ROUTERS: dict[str, CommandRouter] = {
    r.consumer.kind: r
    for r in (scanner_router, registrar_router, inventory_router, fetcher_router, jobs_router)
}
# Every worker kind: the command consumers, and webhooks (fed by its own consumer on the events).
KINDS: tuple[str, ...] = (*ROUTERS, WEBHOOKS.kind)


def attach(runtime: Runtime, kinds: list[str]) -> None:
    """Subscribe the worker kinds' consumers; the inventory kind also runs its scheduler, the
    jobs kind the watchdog."""
    for kind in kinds:
        if kind in ROUTERS:
            ROUTERS[kind].attach(runtime)
    if "inventory" in kinds:
        runtime.spawn(schedule_forever(runtime))
    if "jobs" in kinds:
        runtime.spawn(watch_forever(runtime))
    if WEBHOOKS.kind in kinds:
        webhooks.attach(runtime)


async def start_health_server(runtime: Runtime, host: str, port: int) -> web.AppRunner:
    """``/healthz`` and ``/readyz`` for a standalone worker's Kubernetes probes, and its
    Prometheus metrics at ``/metrics``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = {"database": await runtime.database_ready(), "broker": runtime.broker_ready()}
        ready = all(checks.values())
        return web.json_response(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status=200 if ready else 503,
        )

    async def metrics(_: web.Request) -> web.Response:
        body = await sampling.exposition(runtime)
        return web.Response(body=body, headers={"Content-Type": sampling.CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

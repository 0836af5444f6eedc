"""Health probes, Prometheus metrics (every family of the process, ``shared.observability``),
request ids, and a server span per request when tracing is on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import StateDep
from shared.observability import metrics as families
from shared.observability import sampling, tracing

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database and broker reachable",
    responses={503: {"description": "A dependency is unreachable"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks = {
        "database": await state.runtime.database_ready(),
        "broker": state.runtime.broker_ready(),
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(await sampling.exposition(state.runtime), media_type=sampling.CONTENT_TYPE)


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def install(app: FastAPI) -> None:
    app.include_router(router)
    tracing.instrument_app(app)

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        route = _route_template(request)
        method = families.method_label(request.method)
        families.http_duration(method, route).observe(time.perf_counter() - started)
        families.http_requests(method, route, str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request_id
        return response

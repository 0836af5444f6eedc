"""Health probes, Prometheus metrics (every family of the process, ``shared.observability``),
request ids, and a server span per request when tracing is on."""

from __future__ import annotations

import time
import uuid

import structlog
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.deps import StateDep
from shared.observability import metrics as families
from shared.observability import sampling, tracing

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str
    checks: dict[str, bool]


@router.get(
    "/readyz",
    summary="Readiness: database and broker reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is unreachable"}},
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


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", "unmatched")


class RequestContextMiddleware:
    """Request ids (``X-Request-ID``, bound to every log line of the request) and the request
    metrics, as pure ASGI: no task, stream or ``Request`` object per request.

    Durations run to the response's start (its headers), so an event stream counts its setup,
    not its hours; a request that fails before answering counts as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get("x-request-id") or uuid.uuid4().hex
        header = (b"x-request-id", request_id.encode("latin-1"))
        started = time.perf_counter()
        answered = False

        def observe(status: int) -> None:
            route = _route_template(scope)
            method = families.method_label(scope["method"])
            families.http_duration(method, route).observe(time.perf_counter() - started)
            families.http_requests(method, route, str(status)).inc()

        async def tagged(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                observe(message["status"])
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, tagged)
        except BaseException:
            if not answered:
                observe(500)
            raise
        finally:
            structlog.contextvars.unbind_contextvars("request_id")


def install(app: FastAPI) -> None:
    app.include_router(router)
    tracing.instrument_app(app)
    app.add_middleware(RequestContextMiddleware)

"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.api import bodylimit, errors, observability, schema
from services.api.errors import ErrorDetail
from services.api.routes import (
    auth_profiles,
    baselines,
    deployments,
    events,
    firmware,
    groups,
    jobs,
    nodes,
    os_images,
    pools,
    scan_ranges,
    servers,
    switches,
    tokens,
    users,
    webhooks,
)
from services.api.state import ApiState
from shared.platform.runtime import Runtime

DESCRIPTION = """Racksmith manages the lifecycle of physical servers: discovery of BMCs,
registration, hardware inventory, pools with group-based access, and events. Paths, fields,
query parameters and status codes follow the MOJO API Automation Guide."""

# Every operation documents the error shapes a client must handle.
COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorDetail, "description": "Missing, invalid or expired token"},
    403: {"model": ErrorDetail, "description": "Authenticated but not allowed"},
    404: {"model": ErrorDetail, "description": "No such object (or not visible to you)"},
}


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(runtime: Runtime, *, owns_runtime: bool = False) -> FastAPI:
    """Build the API on ``runtime``; with ``owns_runtime`` the app connects and closes it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owns_runtime:
            await runtime.connect()
        try:
            yield
        finally:
            if owns_runtime:
                await runtime.close()

    app = FastAPI(
        title="Racksmith API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=True,
        # Operation ids are the route functions' names (`list_scan_ranges`, `run_scan`): what a
        # generated client calls its functions, so they are part of the contract.
        generate_unique_id_function=_operation_id,
    )
    app.state.api = ApiState.build(runtime)
    app.state.settings = runtime.settings
    errors.install(app)
    # Inside the request-id and metrics middleware, so refused bodies are counted and tagged.
    bodylimit.install(app, runtime.settings.max_body_bytes)
    observability.install(app)
    schema.install(app)
    for module in (
        tokens,
        users,
        groups,
        scan_ranges,
        auth_profiles,
        nodes,
        servers,
        jobs,
        deployments,
        pools,
        switches,
        firmware,
        baselines,
        os_images,
        webhooks,
        events,
    ):
        app.include_router(module.router, responses=COMMON_ERRORS)
    return app

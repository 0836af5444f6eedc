"""The OpenAPI and AsyncAPI documents and their viewers, served with no request leaving the host.

Data centres are often air-gapped: Swagger UI and ReDoc assets come from the fastapi-offline
package's bundled copies, ReDoc's web fonts are switched off, and the AsyncAPI viewer is the
self-contained web component that the asyncapi-viewer package ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncapi_viewer
import fastapi_offline
import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles

from services.api import bodylimit, openapi30
from services.api.errors import ErrorDetail, FieldErrors
from shared.contracts import asyncapi

ASSETS_PATH = "/api/schema/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
ASYNCAPI_ASSETS_PATH = "/api/schema/asyncapi/assets"
ASYNCAPI_ASSETS_DIR = Path(asyncapi_viewer.__file__).with_name("static")

_VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": 'Field name → messages, e.g. {"page_size": ["Ensure this value is …"]}; '
    "errors not tied to one field are under `non_field_errors`.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
_BAD_REQUEST = {
    "description": "Invalid input: the body names each offending field, or (a body that is not "
    'JSON) says `{"detail": "JSON parse error - …"}`.',
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/ValidationErrors"},
                    {"$ref": "#/components/schemas/ErrorDetail"},
                ]
            }
        }
    },
}
_ERROR_DETAIL = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}
# The versions `/api/schema/?version=` serves; the guide promises 3.0, so that is the default.
OPENAPI_VERSIONS = ("3.0", "3.0.3", "3.1", "3.1.0")


def openapi_document(app: FastAPI, version: str = openapi30.OPENAPI_30) -> dict[str, Any]:
    """The document in OpenAPI 3.1 (FastAPI's own) or 3.0.3 (the default)."""
    if version.startswith("3.1"):
        return build_openapi(app)
    cached: dict[str, Any] | None = getattr(app.state, "openapi_30", None)
    if cached is None:
        cached = openapi30.downgrade(build_openapi(app))
        app.state.openapi_30 = cached
    return cached


def _body_caps(app: FastAPI) -> dict[tuple[str, str], int | None]:
    """Each operation's request-body cap (``services.api.bodylimit``): the app's default, or the
    endpoint's own (None for the uploads that bound what they store themselves)."""
    default = bodylimit.default_cap(app)
    return {
        (route.path_format or "", method.lower()): bodylimit.cap_of(route.endpoint, default)
        # Included routers' routes, as the document lists them.
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema (3.1), reshaped for the DRF contract: 400 instead of 422 everywhere, and
    413 wherever a body is taken under a cap (uploads document their own)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["ValidationErrors"] = _VALIDATION_ERROR_SCHEMA
    components.setdefault("ErrorDetail", ErrorDetail.model_json_schema())
    caps = _body_caps(app)
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["400"] = _BAD_REQUEST
            cap = caps.get((path, method))
            # Only a route that reads a body can find it too large (the cap is applied as the
            # body is read).
            if "requestBody" in operation and cap is not None:
                responses.setdefault(
                    "413",
                    {
                        "description": f"The request body is larger than {cap} bytes.",
                        "content": _ERROR_DETAIL,
                    },
                )
    app.openapi_schema = schema
    return schema


router = APIRouter(prefix="/api/schema", tags=["schema"], include_in_schema=False)


def _wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    if request.query_params.get("format") == "yaml":
        return False
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "yaml" not in accept


def _document_response(
    request: Request, document: dict[str, Any], *, yaml_type: str, json_type: str
) -> Response:
    """``document`` as YAML (the default) or JSON, by ``?format=`` or the Accept header."""
    if _wants_json(request):
        return JSONResponse(document, media_type=json_type)
    return Response(
        yaml.safe_dump(document, sort_keys=False, allow_unicode=True), media_type=yaml_type
    )


@router.get("/")
async def openapi_schema(request: Request) -> Response:
    version = request.query_params.get("version") or openapi30.OPENAPI_30
    if version not in OPENAPI_VERSIONS:
        raise FieldErrors.single(
            "version", f"Select a valid choice. {version} is not one of the available choices."
        )
    return _document_response(
        request,
        openapi_document(request.app, version),
        yaml_type="application/vnd.oai.openapi",
        json_type="application/vnd.oai.openapi+json",
    )


@router.get("/asyncapi/")
async def asyncapi_document(request: Request) -> Response:
    return _document_response(
        request,
        asyncapi.document(),
        yaml_type="application/vnd.aai.asyncapi+yaml",
        json_type="application/vnd.aai.asyncapi+json",
    )


@router.get("/asyncapi/viewer/")
async def asyncapi_viewer_page() -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{asyncapi.TITLE} — AsyncAPI</title>
<script src="{ASYNCAPI_ASSETS_PATH}/asyncapi-viewer.iife.js"></script>
</head>
<body>
<asyncapi-viewer src="/api/schema/asyncapi/?format=json" sidebar></asyncapi-viewer>
</body>
</html>
"""
    )


@router.get("/swagger-ui/")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/api/schema/?format=json",
        title="Racksmith API — Swagger UI",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        # validatorUrl would send the schema to swagger.io for a badge.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


@router.get("/redoc/")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/api/schema/?format=json",
        title="Racksmith API — ReDoc",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="schema-assets")
    app.mount(
        ASYNCAPI_ASSETS_PATH,
        StaticFiles(directory=ASYNCAPI_ASSETS_DIR),
        name="asyncapi-assets",
    )

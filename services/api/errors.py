"""Errors in Django REST Framework's shapes, because the guide's clients parse those.

Validation → 400 ``{"field": ["message"]}`` (never 422); everything else → ``{"detail": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.core.log import get_logger
from shared.messaging.publish import BrokerUnavailableError

log = get_logger(__name__)

BROKER_DOWN = "The message broker is unavailable; the work was not started."

NON_FIELD_ERRORS = "non_field_errors"
FASTAPI_BODY_ERROR = "There was an error parsing the body"
# Where a field lives in FastAPI's error locations; not part of the field name a client sees.
_LOCATION_PARTS = {"body", "query", "path", "header", "cookie"}

_MESSAGES = {
    "missing": "This field is required.",
    "int_parsing": "A valid integer is required.",
    "int_type": "A valid integer is required.",
    "bool_parsing": "Must be a valid boolean.",
    "bool_type": "Must be a valid boolean.",
    "string_type": "Not a valid string.",
    "list_type": 'Expected a list of items but got type "{type}".',
    "model_attributes_type": "Invalid data. Expected a dictionary.",
    "dict_type": "Invalid data. Expected a dictionary.",
}


class ErrorDetail(BaseModel):
    """``{"detail": "..."}``: authentication, permission, not found, conflict, throttling."""

    detail: str


class APIError(Exception):
    """Raise from any route or dependency to answer ``{"detail": ...}`` with a status."""

    def __init__(
        self, status_code: int, detail: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers or {})

    @property
    def extra(self) -> dict[str, Any]:
        """Fields beside ``detail`` that say more (e.g. which objects block a request)."""
        return {}


class FieldErrors(Exception):
    """Raise to answer 400 with per-field messages, e.g. ``FieldErrors({"ip_to": ["..."]})``."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        super().__init__(dict(errors))
        self.errors = {field: list(messages) for field, messages in errors.items()}

    @classmethod
    def single(cls, field: str, message: str) -> FieldErrors:
        return cls({field: [message]})


def documented(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI ``responses`` entry for a ``{"detail": ...}`` error a route can answer."""
    return {status: {"model": ErrorDetail, "description": description}}


def not_found() -> APIError:
    return APIError(404, "Not found.")


def permission_denied() -> APIError:
    return APIError(403, "You do not have permission to perform this action.")


def _field_name(loc: Sequence[int | str]) -> str:
    """``("body", "ports", 0)`` → ``ports``: the field a person typed, not the list position."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        if part not in _LOCATION_PARTS:
            parts.append(part)
    return ".".join(parts) if parts else NON_FIELD_ERRORS


def _message(error: Mapping[str, Any]) -> str:
    template = _MESSAGES.get(error["type"])
    if template is None:
        return str(error["msg"]).removeprefix("Value error, ")
    ctx = error.get("ctx") or {}
    return template.format(type=type(error.get("input")).__name__, msg=ctx.get("error", ""))


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    shaped: dict[str, list[str]] = {}
    for error in errors:
        shaped.setdefault(_field_name(error["loc"]), []).append(_message(error))
    return shaped


JSON_PARSE_ERROR = "JSON parse error - {}"


def _json_error(error: Mapping[str, Any], document: Any) -> str:
    """DRF's message, which quotes the decoder: ``Expecting value: line 1 column 1 (char 0)``."""
    reason = str((error.get("ctx") or {}).get("error", "invalid JSON"))
    position = error["loc"][1] if len(error["loc"]) > 1 else None
    if isinstance(document, str) and isinstance(position, int):
        reason = str(json.JSONDecodeError(reason, document, position))
    return JSON_PARSE_ERROR.format(reason)


def _detail_error(exc: RequestValidationError) -> tuple[int, str] | None:
    """Errors DRF does not answer per field: an id in the path that cannot name anything is a
    404 (DRF's URL patterns never match it), a body that is not JSON a 400 ``detail``."""
    for error in exc.errors():
        if error["loc"][:1] == ("path",):
            return 404, "Not found."
        if error["type"] == "json_invalid":
            return 400, _json_error(error, exc.body)
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _detail_error(exc)
        if detail is not None:
            return JSONResponse({"detail": detail[1]}, status_code=detail[0])
        return JSONResponse(validation_errors(exc.errors()), status_code=400)

    @app.exception_handler(FieldErrors)
    async def _fields(_: Request, exc: FieldErrors) -> JSONResponse:
        return JSONResponse(exc.errors, status_code=400)

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.detail} | exc.extra
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(BrokerUnavailableError)
    async def _broker(_: Request, exc: BrokerUnavailableError) -> JSONResponse:
        # Whatever the route started was undone before this reached here (shared.lifecycle).
        log.error("api.broker_unavailable", error=str(exc))
        return JSONResponse({"detail": BROKER_DOWN}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "Not found."
        elif exc.status_code == 400 and detail == FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body it could not decode at all (not UTF-8, say).
            detail = JSON_PARSE_ERROR.format(exc.__cause__ or "the body could not be decoded")
        elif exc.status_code == 405:
            detail = f'Method "{request.method}" not allowed.'
        return JSONResponse(
            {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

"""Request body limits, enforced on the bytes as they arrive.

Every request body is capped (``RACKSMITH_MAX_BODY_BYTES``, 1 MiB by default): a declared
``Content-Length`` above the cap is answered 413 before a byte is read, and a body without one
(chunked) is counted as it streams in and cut off at the cap, so no request can make the API
hold more than the cap in memory. A pure ASGI middleware does it, below FastAPI's body parsing.

Routes that take large uploads (firmware, OS images) stream them and set their own cap with
``@body_limit(max_bytes)`` on the endpoint (``None``: no cap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__racksmith_max_body__"
_UNSET = object()


def body_limit(max_bytes: int | None) -> Callable[[F], F]:
    """Give an endpoint its own body cap instead of the default (``None``: uncapped, for routes
    that stream and bound what they store themselves)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, max_bytes)
        return endpoint

    return mark


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its cap; FastAPI passes HTTP exceptions raised
    while it reads a body through to the app's handler, which answers ``{"detail": ...}``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes.")
        self.limit = limit


def _cap_of(scope: Scope, default: int) -> int | None:
    """The routed endpoint's own cap, or the default.

    Routing has happened by the time an endpoint reads its body (the router puts the endpoint in
    the scope), so the cap is decided at the first read — also for a declared ``Content-Length``,
    which is refused before a byte of the body is received.
    """
    cap = getattr(scope.get("endpoint"), _ATTRIBUTE, _UNSET)
    return default if cap is _UNSET else cap  # type: ignore[return-value]


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, default: int) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared_header = Headers(scope=scope).get("content-length")
        declared = int(declared_header) if declared_header and declared_header.isdigit() else None
        limit: int | None = None
        decided = False
        received = 0

        async def counted() -> Message:
            nonlocal limit, decided, received
            if not decided:
                decided = True
                limit = _cap_of(scope, self.default)
                if limit is not None and declared is not None and declared > limit:
                    raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if limit is not None and received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:
            if started:  # a route that answered while reading: nothing left to say
                return
            await self._reject(scope, receive, send, exc.limit)

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = BodyTooLarge(limit)
        # The client may still be sending: the server closes the connection rather than read
        # the rest (uvicorn does when a response ends before its request body).
        response = JSONResponse({"detail": exc.detail}, status_code=413)
        await response(scope, receive, send)


def install(app: FastAPI, default: int) -> None:
    app.add_middleware(BodyLimitMiddleware, default=default)

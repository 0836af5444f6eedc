"""Request body limits, enforced on the bytes as they arrive.

Every request body is capped (``RACKSMITH_MAX_BODY_BYTES``, 1 MiB by default): a declared
``Content-Length`` above the cap is answered 413 before a byte is read, and a body without one
(chunked) is counted as it streams in and cut off at the cap, so no request can make the API
hold more than the cap in memory. A pure ASGI middleware does it, below FastAPI's body parsing.

Routes that take large uploads (firmware, OS images) stream them and set their own cap with
``@body_limit(max_bytes)`` on the endpoint (``None``: no cap); only requests over the default
cap look the route up, so the common case costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match, Router
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


class _Cap:
    """A request's cap: the default until a body passes it, then the route's own."""

    def __init__(self, middleware: BodyLimitMiddleware, scope: Scope) -> None:
        self.limit: int | None = middleware.default
        self._middleware = middleware
        self._scope = scope
        self._resolved = False

    def exceeded_by(self, size: int) -> int | None:
        """The cap ``size`` is over, or None if it fits."""
        if self.limit is not None and size > self.limit and not self._resolved:
            self._resolved = True
            self.limit = self._middleware.route_cap(self._scope)
        return self.limit if self.limit is not None and size > self.limit else None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, router: Router, default: int) -> None:
        self.app = app
        self.router = router
        self.default = default

    def route_cap(self, scope: Scope) -> int | None:
        """The matched endpoint's own cap, or the default."""
        for route in self.router.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                cap = getattr(child.get("endpoint"), _ATTRIBUTE, _UNSET)
                return self.default if cap is _UNSET else cap  # type: ignore[return-value]
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = _Cap(self, scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit():
            exceeded = cap.exceeded_by(int(declared))
            if exceeded is not None:
                await self._reject(scope, receive, send, exceeded)
                return

        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                exceeded = cap.exceeded_by(received)
                if exceeded is not None:
                    raise BodyTooLarge(exceeded)
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
    app.add_middleware(BodyLimitMiddleware, router=app.router, default=default)

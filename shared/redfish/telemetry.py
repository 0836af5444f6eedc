"""What the Redfish client reports about each request: metrics by vendor, method and status
class (never the BMC's address), busy and unreachable counts, open sessions, a client span when
tracing is on, and the running count of requests of the BMC operation in progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType

from prometheus_client import Gauge
from yarl import URL

from shared.observability import metrics, tracing
from shared.redfish.errors import BmcUnreachable

BUSY_STATUSES = frozenset({429, 503, 504})

# The request count of the BMC operation running in this task (and the tasks it spawns: a list
# is shared by reference when asyncio copies the context).
_operation_requests: ContextVar[list[int] | None] = ContextVar(
    "racksmith_bmc_operation_requests", default=None
)


@contextmanager
def counting_requests() -> Iterator[list[int]]:
    """Count the Redfish requests made inside the block (``tally[0]``), wherever they run."""
    tally = [0]
    token = _operation_requests.set(tally)
    try:
        yield tally
    finally:
        _operation_requests.reset(token)


class RequestObserver:
    """One Redfish request: ``with`` it around the exchange, call ``answered`` with the status."""

    __slots__ = ("_method", "_span", "_started", "_status", "_vendor")

    def __init__(self, vendor: str, method: str, url: URL) -> None:
        self._vendor = vendor
        self._method = metrics.method_label(method)
        self._status: int | None = None
        self._span = tracing.client_span(
            f"redfish {self._method}",
            {
                "http.request.method": method,
                "server.address": url.host or "",
                "server.port": url.port or 443,
                "url.path": url.path,
                "racksmith.bmc.vendor": vendor,
            },
        )
        self._started = 0.0

    def __enter__(self) -> RequestObserver:
        self._started = time.perf_counter()
        return self

    def answered(self, status: int) -> None:
        self._status = status

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        vendor, method, status = self._vendor, self._method, self._status
        metrics.bmc_requests(vendor, method, metrics.status_class(status)).inc()
        metrics.bmc_request_duration(vendor, method).observe(elapsed)
        if status in BUSY_STATUSES:
            metrics.bmc_busy(vendor).inc()
        elif isinstance(exc, BmcUnreachable):
            metrics.bmc_unreachable(vendor).inc()
        tally = _operation_requests.get()
        if tally is not None:
            tally[0] += 1
        if self._span is not None:
            tracing.end_client_span(self._span, status, exc)


def session_opened(vendor: str) -> Gauge:
    """Count a BMC session as open; ``dec()`` the returned gauge when it is logged out."""
    gauge = metrics.bmc_sessions_open(vendor)
    gauge.inc()
    return gauge

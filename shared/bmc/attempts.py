"""Observing attempts at BMC work (a registration, an inventory): outcome, reason, duration and
the Redfish requests each made.

A handler decorated with ``observed(operation)`` counts as ``succeeded`` when it returns, unless
it said otherwise: ``failed(reason)`` when it records a failure on its target, ``skipped()`` for a
stale command. A handler that raises is ``retried`` (the router redelivers it), or ``failed`` on
its last delivery — its give-up hook then records nothing more, so every attempt counts once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from shared.bmc.failures import failure_class
from shared.messaging.consumer import CommandContext
from shared.observability import metrics
from shared.redfish.telemetry import counting_requests

P = TypeVar("P", bound=BaseModel)
Handler = Callable[[P, CommandContext], Awaitable[None]]


@dataclass
class _Attempt:
    outcome: str = "succeeded"
    reason: str = "none"


_current: ContextVar[_Attempt | None] = ContextVar("racksmith_bmc_attempt", default=None)


def failed(reason: str) -> None:
    """The attempt in progress recorded a failure on its target (``reason``: a failure class)."""
    attempt = _current.get()
    if attempt is not None:
        attempt.outcome, attempt.reason = "failed", reason


def skipped() -> None:
    """The attempt in progress found its command stale and did nothing."""
    attempt = _current.get()
    if attempt is not None:
        attempt.outcome = "skipped"


def observed(operation: str) -> Callable[[Handler[P]], Handler[P]]:
    """Record every run of the decorated command handler as an attempt at ``operation``."""

    def decorate(handler: Handler[P]) -> Handler[P]:
        @functools.wraps(handler)
        async def run(command: P, ctx: CommandContext) -> None:
            attempt = _Attempt()
            token = _current.set(attempt)
            started = time.perf_counter()
            with counting_requests() as requests:
                try:
                    await handler(command, ctx)
                except Exception as exc:
                    attempt.outcome = "failed" if ctx.is_last_delivery else "retried"
                    attempt.reason = failure_class(exc)
                    raise
                finally:
                    _current.reset(token)
                    elapsed = time.perf_counter() - started
                    metrics.bmc_operations(operation, attempt.outcome, attempt.reason).inc()
                    if attempt.outcome != "skipped":
                        metrics.bmc_operation_duration(operation, attempt.outcome).observe(elapsed)
                        metrics.bmc_operation_requests(operation).observe(requests[0])

        return run

    return decorate

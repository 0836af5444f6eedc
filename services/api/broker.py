"""The API's side of the broker: queueing work, and announcing changes that are already saved.

Starting work that changes state first (a scan run, a registration) goes through
``shared.lifecycle``; a broker that refuses the command there raises ``BrokerUnavailableError``,
which the API answers with 503 (``services/api/errors.py``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from services.api.errors import BROKER_DOWN, APIError
from shared.contracts.commands import Command
from shared.core.log import get_logger
from shared.messaging.publish import BrokerUnavailableError
from shared.platform.runtime import Runtime

log = get_logger(__name__)


class BrokerDown(BaseModel):
    """503: the broker refused the work. A bulk request says what had started before it did."""

    detail: str = Field(examples=[BROKER_DOWN])
    started: list[int] | None = Field(
        default=None,
        description="Bulk requests: the ids whose work did start before the broker refused; "
        "the others did not (retry those).",
    )


# The OpenAPI response every route that queues work documents.
BROKER_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": BrokerDown, "description": "The broker did not accept the work"}
}


class PartlyStarted(APIError):
    """A bulk start the broker refused halfway: 503 naming the ids that did start."""

    def __init__(self, started: list[int]) -> None:
        super().__init__(
            503,
            "The message broker is unavailable; only the items listed in `started` were "
            "started, the others were not.",
        )
        self.started = started

    @property
    def extra(self) -> dict[str, Any]:
        return {"started": self.started}


async def publish(runtime: Runtime, commands: list[Command]) -> None:
    """Queue commands that change no state up front (e.g. a refresh); 503 if refused."""
    for command in commands:
        await runtime.publisher.command(command)


async def announce(runtime: Runtime) -> None:
    """Relay the events of a change that is already committed. A broker outage must not turn a
    saved change into an error (the client would retry and duplicate it): the outbox sweep
    delivers the events when the broker is back."""
    try:
        await runtime.outbox.relay()
    except BrokerUnavailableError as exc:
        log.warning("events.delayed", error=str(exc))

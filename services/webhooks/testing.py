"""The test action (``POST /api/webhooks/{id}/test/``), sent by a webhooks worker.

Only the webhooks worker may reach receivers — in Kubernetes its egress policy is the one that
lets traffic out to them, and it applies the target policy it is configured with — so the API
never sends: it asks a webhooks worker over NATS request/reply (a queue group, so one replica
answers) and shows the delivery that worker logged.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from services.webhooks.deliveries import send_test
from shared.contracts.subjects import WEBHOOK_TEST_REQUESTS
from shared.core.log import get_logger
from shared.models import Webhook
from shared.platform.runtime import Runtime

log = get_logger(__name__)

QUEUE_GROUP = "webhooks"
# Beyond the attempt's own timeout: loading the webhook, logging the delivery, the round trip.
MARGIN_S = 5.0


class TestRequest(BaseModel):
    webhook_id: int


class TestReply(BaseModel):
    delivery_id: int | None = None
    error: str | None = None


class TestUnavailable(Exception):
    """No webhooks worker answered; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def request_test(runtime: Runtime, webhook_id: int) -> int:
    """Have a webhooks worker send the test event; the id of the delivery it logged."""
    assert runtime.nats is not None
    timeout = runtime.settings.webhook_timeout_s + MARGIN_S
    payload = TestRequest(webhook_id=webhook_id).model_dump_json().encode()
    try:
        message = await runtime.nats.request(WEBHOOK_TEST_REQUESTS, payload, timeout=timeout)
    except NoRespondersError:
        raise TestUnavailable(
            503, "No webhooks worker is running to send the test; start one and try again."
        ) from None
    except NatsTimeoutError:
        raise TestUnavailable(
            504, "The webhooks worker did not report the outcome in time; see deliveries/."
        ) from None
    reply = TestReply.model_validate_json(message.data)
    if reply.delivery_id is None:
        raise TestUnavailable(503, reply.error or "The webhooks worker could not send the test.")
    return reply.delivery_id


class TestResponder:
    """The webhooks worker's side: one task per request, so a slow receiver holds up nobody."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        assert self.runtime.nats is not None
        await self.runtime.nats.subscribe(
            WEBHOOK_TEST_REQUESTS, queue=QUEUE_GROUP, cb=self._on_request
        )

    async def _on_request(self, message: Msg) -> None:
        task = asyncio.create_task(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: Msg) -> None:
        try:
            request = TestRequest.model_validate_json(message.data)
            async with self.runtime.db.session() as session:
                webhook = await session.get(Webhook, request.webhook_id)
            if webhook is None:
                reply = TestReply(error="The webhook was deleted.")
            else:
                delivery = await send_test(self.runtime, webhook)
                reply = TestReply(delivery_id=delivery.id)
        except ValidationError:
            reply = TestReply(error="Malformed test request.")
        except Exception as exc:  # the API must hear back rather than wait for its timeout
            log.error("webhooks.test_failed", error=str(exc))
            reply = TestReply(error="The webhooks worker failed to send the test.")
        if message.reply:
            await message.respond(reply.model_dump_json().encode())

"""``/api/webhooks/``: HTTP receivers of events, their delivery log, and a test send.

Superuser-only. The signing secret is write-only: unless the request supplies one it is generated
and shown once, in the 201; it is stored encrypted and never returned, logged or put in an event.
A URL must pass the target policy (``shared.core.targets``), checked here and again on every
delivery. Deliveries — the test action's too — are made by the webhooks worker
(``services/webhooks``); this process never connects to a receiver.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.auth import Principal
from services.api.deps import SessionDep, StateDep, Superuser, get_superuser
from services.api.errors import APIError, FieldErrors, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404
from services.api.state import ApiState
from services.webhooks import filters, testing
from shared.contracts.catalog import UnknownEventTypeError
from shared.core.log import get_logger
from shared.core.targets import WEBHOOK_RECEIVERS, TargetError, TargetPolicy, check_url
from shared.models import Webhook, WebhookDelivery
from shared.models.webhooks import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryPublic,
    WebhookPublic,
    WebhookUpdate,
)

log = get_logger(__name__)

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], dependencies=[Depends(get_superuser)])

LIST_SPEC = ListSpec(
    pk=col(Webhook.id),
    search=(col(Webhook.name), col(Webhook.url)),
    public=WebhookPublic,
    ordering={
        "id": col(Webhook.id),
        "name": col(Webhook.name),
        "created_at": col(Webhook.created_at),
    },
)
WebhookListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]

DELIVERY_SPEC = ListSpec(
    pk=col(WebhookDelivery.id),
    search=(col(WebhookDelivery.event_id), col(WebhookDelivery.subject)),
    public=WebhookDeliveryPublic,
    ordering={"id": col(WebhookDelivery.id), "created_at": col(WebhookDelivery.created_at)},
    default_ordering="-id",
)
DeliveryListQuery = Annotated[ListQuery, Depends(list_params(DELIVERY_SPEC))]


async def _checked(
    state: ApiState, url: str | None, event_types: list[str] | None
) -> tuple[str | None, list[str] | None]:
    """The URL and the event types as stored, or a 400 naming every field that is wrong."""
    errors: dict[str, list[str]] = {}
    if url is not None:
        url = url.strip()
        try:
            await check_url(url, TargetPolicy.from_settings(state.settings, WEBHOOK_RECEIVERS))
        except TargetError as exc:
            errors["url"] = [str(exc)]
    if event_types is not None:
        try:
            event_types = filters.normalize(event_types)
        except UnknownEventTypeError as exc:
            errors["event_types"] = [str(exc)]
    if errors:
        raise FieldErrors(errors)
    return url, event_types


@router.get("/", summary="List webhooks")
async def list_webhooks(session: SessionDep, query: WebhookListQuery) -> Page[WebhookPublic]:
    return await paginate(session, select(Webhook), query, WebhookPublic.of)


@router.post("/", status_code=201, summary="Create a webhook (the generated secret is shown once)")
async def create_webhook(
    body: WebhookCreate, session: SessionDep, state: StateDep
) -> WebhookCreated:
    url, event_types = await _checked(state, body.url, body.event_types)
    assert url is not None and event_types is not None
    secret = body.secret or secrets.token_urlsafe(32)
    webhook = Webhook(
        name=body.name,
        url=url,
        event_types=event_types,
        content_mode=body.content_mode,
        secret_encrypted=state.credentials.encrypt(secret),
        active=body.active,
    )
    session.add(webhook)
    await session.commit()
    log.info("webhook.created", webhook=webhook.id)
    public = WebhookPublic.of(webhook).model_dump()
    return WebhookCreated(**public, secret=None if body.secret else secret)


@router.get("/{webhook_id}/", summary="Retrieve a webhook")
async def read_webhook(webhook_id: int, session: SessionDep) -> WebhookPublic:
    return WebhookPublic.of(await get_or_404(session, Webhook, webhook_id))


async def _update(
    session: AsyncSession,
    state: ApiState,
    user: Principal,
    webhook_id: int,
    changes: dict[str, Any],
) -> WebhookPublic:
    webhook = await get_or_404(session, Webhook, webhook_id)
    url, event_types = await _checked(
        state, changes.pop("url", None), changes.pop("event_types", None)
    )
    if url is not None:
        webhook.url = url
    if event_types is not None:
        webhook.event_types = event_types
    secret = changes.pop("secret", None)
    if secret is not None:
        webhook.secret_encrypted = state.credentials.encrypt(secret)
    now = datetime.now(UTC)
    active = changes.pop("active", webhook.active)
    if active and not webhook.active:
        # Re-enabled: a clean slate, so one more failure does not disable it again at once.
        webhook.disabled_reason = None
        webhook.disabled_at = None
        webhook.consecutive_failures = 0
        webhook.failing_since = None
    elif not active and webhook.active:
        webhook.disabled_reason = f"Deactivated by {user.username}."
        webhook.disabled_at = now
    webhook.active = bool(active)
    for name, value in changes.items():
        setattr(webhook, name, value)
    webhook.updated_at = now
    webhook.version += 1
    session.add(webhook)
    await session.commit()
    return WebhookPublic.of(webhook)


@router.put("/{webhook_id}/", summary="Replace a webhook (the secret changes only if sent)")
async def replace_webhook(
    webhook_id: int, body: WebhookCreate, session: SessionDep, state: StateDep, user: Superuser
) -> WebhookPublic:
    return await _update(session, state, user, webhook_id, body.model_dump(exclude_unset=True))


@router.patch("/{webhook_id}/", summary="Update some fields of a webhook")
async def update_webhook(
    webhook_id: int, body: WebhookUpdate, session: SessionDep, state: StateDep, user: Superuser
) -> WebhookPublic:
    return await _update(session, state, user, webhook_id, body.model_dump(exclude_unset=True))


@router.delete("/{webhook_id}/", status_code=204, summary="Delete a webhook and its delivery log")
async def delete_webhook(webhook_id: int, session: SessionDep) -> Response:
    await session.delete(await get_or_404(session, Webhook, webhook_id))
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/test/",
    summary="Send a test event now and answer with the attempt's outcome",
    description="A webhooks worker sends `io.racksmith.webhook.test` (data: the webhook) through "
    "the same signing, sending and address checks as real deliveries, also to a disabled "
    "webhook. One attempt, never retried, not counted towards disabling; logged in "
    "`deliveries/`. 503 when no webhooks worker runs, 504 when it did not report in time.",
    responses={
        **documented(503, "No webhooks worker answered"),
        **documented(504, "The webhooks worker did not report the outcome in time"),
    },
)
async def test_webhook(
    webhook_id: int, session: SessionDep, state: StateDep
) -> WebhookDeliveryPublic:
    await get_or_404(session, Webhook, webhook_id)
    # Nothing of this request's transaction is needed while the worker sends.
    await session.commit()
    try:
        delivery_id = await testing.request_test(state.runtime, webhook_id)
    except testing.TestUnavailable as exc:
        raise APIError(exc.status, str(exc)) from None
    delivery = await get_or_404(session, WebhookDelivery, delivery_id)
    return WebhookDeliveryPublic.of(delivery)


@router.get(
    "/{webhook_id}/deliveries/",
    summary="The webhook's delivery log, newest first",
)
async def list_deliveries(
    webhook_id: int, session: SessionDep, query: DeliveryListQuery
) -> Page[WebhookDeliveryPublic]:
    await get_or_404(session, Webhook, webhook_id)
    stmt = select(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook_id)
    return await paginate(session, stmt, query, WebhookDeliveryPublic.of)

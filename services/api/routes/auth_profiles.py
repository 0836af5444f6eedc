"""``/api/node_discovery/auth_profile/``: BMC credentials, tried in order during registration.

Superuser-only. Passwords are write-only: encrypted before they reach the database, never
returned, never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.api.deps import SessionDep, StateDep, get_superuser
from services.api.errors import not_found
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404
from shared.core.log import get_logger
from shared.models import AuthProfile, Credential
from shared.models.registration import (
    AuthProfileCreate,
    AuthProfilePublic,
    AuthProfileUpdate,
    CredentialCreate,
    CredentialPublic,
)

log = get_logger(__name__)

router = APIRouter(
    prefix="/api/node_discovery/auth_profile",
    tags=["authentication profiles"],
    dependencies=[Depends(get_superuser)],
)

LIST_SPEC = ListSpec(
    pk=col(AuthProfile.id),
    search=(col(AuthProfile.node_classification), col(AuthProfile.bmc)),
    public=AuthProfilePublic,
    ordering={
        "id": col(AuthProfile.id),
        "node_classification": col(AuthProfile.node_classification),
        "created_at": col(AuthProfile.created_at),
    },
)
ProfileListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


def _public(profile: AuthProfile, credentials_count: int) -> AuthProfilePublic:
    assert profile.id is not None
    return AuthProfilePublic(
        id=profile.id,
        node_classification=profile.node_classification,
        bmc=profile.bmc,
        verify_tls=profile.verify_tls,
        ca_bundle=profile.ca_bundle,
        tls_fingerprint=profile.tls_fingerprint,
        credentials_count=credentials_count,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
    )


async def _count_credentials(session: AsyncSession, profile_id: int) -> int:
    return (
        await session.exec(
            select(func.count()).where(col(Credential.auth_profile_id) == profile_id)
        )
    ).one()


@router.get("/", summary="List authentication profiles")
async def list_profiles(session: SessionDep, query: ProfileListQuery) -> Page[AuthProfilePublic]:
    page = await paginate(session, select(AuthProfile), query, lambda p: p)
    ids = [p.id for p in page.results if p.id is not None]
    counts = dict(
        (
            await session.exec(
                select(Credential.auth_profile_id, func.count())
                .where(col(Credential.auth_profile_id).in_(ids))
                .group_by(col(Credential.auth_profile_id))
            )
        ).all()
    )
    return Page(
        count=page.count,
        next=page.next,
        previous=page.previous,
        results=[_public(p, counts.get(p.id, 0)) for p in page.results],
    )


@router.post("/", status_code=201, summary="Create an authentication profile")
async def create_profile(body: AuthProfileCreate, session: SessionDep) -> AuthProfilePublic:
    profile = AuthProfile(**body.model_dump())
    if profile.tls_fingerprint:
        profile.tls_fingerprint = profile.tls_fingerprint.lower()
    session.add(profile)
    await session.commit()
    return _public(profile, 0)


@router.get("/{profile_id}/", summary="Retrieve an authentication profile")
async def read_profile(profile_id: int, session: SessionDep) -> AuthProfilePublic:
    profile = await get_or_404(session, AuthProfile, profile_id)
    return _public(profile, await _count_credentials(session, profile_id))


async def _update(
    session: AsyncSession, profile_id: int, changes: dict[str, object]
) -> AuthProfilePublic:
    profile = await get_or_404(session, AuthProfile, profile_id)
    for name, value in changes.items():
        setattr(profile, name, value)
    if profile.tls_fingerprint:
        profile.tls_fingerprint = profile.tls_fingerprint.lower()
    profile.updated_at = datetime.now(UTC)
    session.add(profile)
    await session.commit()
    return _public(profile, await _count_credentials(session, profile_id))


@router.put("/{profile_id}/", summary="Replace an authentication profile")
async def replace_profile(
    profile_id: int, body: AuthProfileCreate, session: SessionDep
) -> AuthProfilePublic:
    return await _update(session, profile_id, body.model_dump(exclude_unset=True))


@router.patch("/{profile_id}/", summary="Update some fields of an authentication profile")
async def update_profile(
    profile_id: int, body: AuthProfileUpdate, session: SessionDep
) -> AuthProfilePublic:
    return await _update(session, profile_id, body.model_dump(exclude_unset=True))


@router.delete("/{profile_id}/", status_code=204, summary="Delete a profile and its credentials")
async def delete_profile(profile_id: int, session: SessionDep) -> Response:
    await session.delete(await get_or_404(session, AuthProfile, profile_id))
    await session.commit()
    return Response(status_code=204)


def _credential_public(credential: Credential) -> CredentialPublic:
    assert credential.id is not None
    return CredentialPublic(id=credential.id, username=credential.username, order=credential.order)


@router.get("/{profile_id}/credentials/", summary="List a profile's credentials (no passwords)")
async def list_credentials(profile_id: int, session: SessionDep) -> Page[CredentialPublic]:
    await get_or_404(session, AuthProfile, profile_id)
    credentials = (
        await session.exec(
            select(Credential)
            .where(col(Credential.auth_profile_id) == profile_id)
            .order_by(col(Credential.order), col(Credential.id))
        )
    ).all()
    results = [_credential_public(c) for c in credentials]
    return Page(count=len(results), next=None, previous=None, results=results)


@router.post(
    "/{profile_id}/credentials/",
    status_code=201,
    summary="Add a credential (tried after the existing ones unless `order` says otherwise)",
)
async def add_credential(
    profile_id: int, body: CredentialCreate, session: SessionDep, state: StateDep
) -> CredentialPublic:
    await get_or_404(session, AuthProfile, profile_id)
    order = body.order
    if order is None:
        highest = (
            await session.exec(
                select(func.max(Credential.order)).where(
                    col(Credential.auth_profile_id) == profile_id
                )
            )
        ).one()
        order = 0 if highest is None else highest + 1
    credential = Credential(
        auth_profile_id=profile_id,
        username=body.username,
        password_encrypted=state.credentials.encrypt(body.password),
        order=order,
    )
    session.add(credential)
    await session.commit()
    log.info("credential.added", auth_profile=profile_id, credential=credential.id)
    return _credential_public(credential)


@router.delete(
    "/{profile_id}/credentials/{credential_id}/", status_code=204, summary="Delete a credential"
)
async def delete_credential(profile_id: int, credential_id: int, session: SessionDep) -> Response:
    credential = await get_or_404(session, Credential, credential_id)
    if credential.auth_profile_id != profile_id:
        raise not_found()
    await session.delete(credential)
    await session.commit()
    return Response(status_code=204)

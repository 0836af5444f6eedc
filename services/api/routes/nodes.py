"""``/api/node/``: the BMC endpoints discovery found, and registering them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import col, select

from services.api import registration
from services.api.broker import BROKER_UNAVAILABLE
from services.api.deps import SessionDep, StateDep, get_superuser
from services.api.errors import FieldErrors
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404, resolve_ids
from services.api.registration import NodeRegistration
from services.api.waiting import watch_outcomes
from shared.lifecycle import node as node_lifecycle
from shared.models import AuthProfile, Credential, Node, NodeStatus
from shared.models.discovery import NodePublic

router = APIRouter(prefix="/api/node", tags=["nodes"], dependencies=[Depends(get_superuser)])

LIST_SPEC = ListSpec(
    pk=col(Node.id),
    search=(col(Node.vendor), col(Node.product), col(Node.status), col(Node.url)),
    filters={
        "status": col(Node.status),
        "vendor": col(Node.vendor),
        "product": col(Node.product),
        "ip": col(Node.ip),
        "port": col(Node.port),
        "uuid": col(Node.uuid),
        "scan_range": col(Node.scan_range_id),
        "fingerprint_changed": col(Node.fingerprint_changed),
        "auth_profile": col(Node.auth_profile_id),
    },
    ordering={
        "id": col(Node.id),
        "url": col(Node.url),
        "vendor": col(Node.vendor),
        "product": col(Node.product),
        "status": col(Node.status),
        "first_seen": col(Node.first_seen),
        "last_seen": col(Node.last_seen),
    },
)
NodeListQuery = Annotated[ListQuery, Depends(list_params(LIST_SPEC))]


@router.get("/", summary="List nodes")
async def list_nodes(session: SessionDep, query: NodeListQuery) -> Page[NodePublic]:
    return await paginate(session, select(Node), query, NodePublic.of)


@router.get("/{node_id}/", summary="Retrieve a node")
async def read_node(node_id: int, session: SessionDep) -> NodePublic:
    return NodePublic.of(await get_or_404(session, Node, node_id))


@router.delete("/{node_id}/", status_code=204, summary="Forget a node")
async def delete_node(node_id: int, session: SessionDep) -> Response:
    await session.delete(await get_or_404(session, Node, node_id))
    await session.commit()
    return Response(status_code=204)


class RegisterRequest(BaseModel):
    auth_profile: int


class BulkRegisterRequest(BaseModel):
    nodes: list[int] = PField(min_length=1, max_length=10_000)
    auth_profile: int


class BulkRegistration(BaseModel):
    results: list[NodeRegistration]


WaitQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=600,
        description="Seconds to wait for the outcome (default RACKSMITH_REGISTER_WAIT_S); "
        "0 answers 202 at once.",
    ),
]

REGISTER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Finished: each node is `registered` (with its servers) or `error`."},
    202: {"description": "Accepted and still running when the wait ended; poll the node."},
    **BROKER_UNAVAILABLE,
}


async def _profile_with_credentials(session: SessionDep, profile_id: int) -> AuthProfile:
    profile = (await resolve_ids(session, AuthProfile, [profile_id], "auth_profile"))[0]
    has_credentials = (
        await session.exec(
            select(Credential.id).where(col(Credential.auth_profile_id) == profile_id)
        )
    ).first()
    if has_credentials is None:
        raise FieldErrors.single("auth_profile", "This auth profile has no credentials yet.")
    return profile


async def _register(
    session: SessionDep,
    state: StateDep,
    response: Response,
    nodes: list[Node],
    profile: AuthProfile,
    wait: float | None,
) -> list[registration.NodeRegistration]:
    assert profile.id is not None
    seconds = state.settings.register_wait_s if wait is None else wait
    ids = [n.id for n in nodes if n.id is not None]
    nats = state.runtime.nats if seconds else None
    async with watch_outcomes(nats, "node", registration.FINAL_CHANGES) as watch:
        watch.expect(ids)
        for node in nodes:
            await node_lifecycle.start(session, state.runtime, node, profile.id)
        finished = await watch.wait(seconds) if seconds else False
    results = await registration.results(session, nodes)
    finished = finished or all(r.status != NodeStatus.registering for r in results)
    response.status_code = 200 if finished else 202
    return results


@router.post(
    "/register/",
    status_code=202,
    summary="Register several nodes with one auth profile",
    responses=REGISTER_RESPONSES,
)
async def register_nodes(
    body: BulkRegisterRequest,
    session: SessionDep,
    state: StateDep,
    response: Response,
    wait: WaitQuery = None,
) -> BulkRegistration:
    profile = await _profile_with_credentials(session, body.auth_profile)
    nodes = await resolve_ids(session, Node, body.nodes, "nodes")
    return BulkRegistration(results=await _register(session, state, response, nodes, profile, wait))


@router.post(
    "/{node_id}/register/",
    status_code=202,
    summary="Register a node: log in to its BMC and create its servers",
    responses=REGISTER_RESPONSES,
)
async def register_node(
    node_id: int,
    body: RegisterRequest,
    session: SessionDep,
    state: StateDep,
    response: Response,
    wait: WaitQuery = None,
) -> NodeRegistration:
    node = await get_or_404(session, Node, node_id)
    profile = await _profile_with_credentials(session, body.auth_profile)
    return (await _register(session, state, response, [node], profile, wait))[0]

"""``/api/node/``: the BMC endpoints discovery found, registering them, and accepting a BMC's
new certificate (the trust model is in ``shared.bmc.access``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlmodel import col, select

from services.api import registration
from services.api.broker import BROKER_UNAVAILABLE, announce, publish
from services.api.deps import SessionDep, StateDep, get_superuser
from services.api.errors import APIError, FieldErrors, documented
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404, resolve_ids
from services.api.registration import NodeRegistration
from services.api.waiting import watch_outcomes
from shared.contracts.commands import ServerInventoryCommand
from shared.lifecycle import node as node_lifecycle
from shared.models import AuthProfile, Credential, Node, NodeStatus, ScanRange, Server
from shared.models.discovery import NodePublic
from shared.redfish.tls import normalise_fingerprint

router = APIRouter(prefix="/api/node", tags=["nodes"], dependencies=[Depends(get_superuser)])

LIST_SPEC = ListSpec(
    pk=col(Node.id),
    search=(col(Node.vendor), col(Node.product), col(Node.status), col(Node.url)),
    public=NodePublic,
    related={
        "scan_range": (col(Node.scan_range_id), ScanRange),
        "auth_profile": (col(Node.auth_profile_id), AuthProfile),
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


def _register_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "model": model,
            "description": "Finished: each node is `registered` (with its servers) or `error`.",
        },
        202: {
            "model": model,
            "description": "Accepted and still running when the wait ended; poll the node.",
        },
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
        started = set(await node_lifecycle.start(session, state.runtime, nodes, profile.id))
        for node in await node_lifecycle.refreshed(session, [i for i in ids if i not in started]):
            if node.status == NodeStatus.certificate_changed and node.id is not None:
                watch.settled(node.id)  # refused: nothing is coming to wait for
        finished = await watch.wait(seconds) if seconds else False
    results = await registration.results(session, nodes)
    finished = finished or all(r.status != NodeStatus.registering for r in results)
    response.status_code = 200 if finished else 202
    return results


@router.post(
    "/register/",
    status_code=202,
    summary="Register several nodes with one auth profile",
    responses=_register_responses(BulkRegistration),
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
    responses=_register_responses(NodeRegistration),
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


class AcceptCertificate(BaseModel):
    fingerprint: str | None = PField(
        default=None,
        # 95 characters in the `AB:CD:…` form, with room for pasted whitespace.
        max_length=128,
        description="The SHA-256 of the certificate you checked (hex, `AB:CD:…` accepted). "
        "If the node presents another one by now, nothing is accepted (409).",
    )

    @field_validator("fingerprint")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        return None if value is None else normalise_fingerprint(value)


@router.post(
    "/{node_id}/accept_certificate/",
    summary="Trust the certificate the node's BMC presents now",
    description="After a node went to `certificate_changed` (its BMC presents a certificate "
    "other than the trusted one), a superuser who has checked the BMC makes its current "
    "certificate (`fingerprint`) the trusted one: the node returns to `registered` (or "
    "`discovered`), its servers' inventory is queued, and BMC work resumes. Send the "
    "fingerprint you checked to accept exactly that certificate. Accepting a certificate that "
    "is already trusted changes nothing.",
    responses={
        **documented(409, "The node presents another certificate, or none was seen"),
        **BROKER_UNAVAILABLE,
    },
)
async def accept_certificate(
    node_id: int,
    session: SessionDep,
    state: StateDep,
    body: AcceptCertificate | None = None,
) -> NodePublic:
    await get_or_404(session, Node, node_id)
    expected = body.fingerprint if body is not None else None
    try:
        node = await node_lifecycle.accept_certificate(session, node_id, expected)
    except node_lifecycle.CertificateNotAccepted as exc:
        await session.rollback()
        raise APIError(409, str(exc)) from None
    await session.commit()
    await announce(state.runtime)
    if node.status == NodeStatus.registered:
        servers = (
            await session.exec(select(Server.id).where(col(Server.node_id) == node_id))
        ).all()
        await publish(
            state.runtime,
            [
                ServerInventoryCommand(server_id=server_id, token=f"accept:{node.version}")
                for server_id in servers
                if server_id is not None
            ],
        )
    return NodePublic.of(node)

"""``/api/node/``: the BMC endpoints discovery found."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlmodel import col, select

from services.api.deps import SessionDep, get_superuser
from services.api.listing import ListQuery, ListSpec, Page, list_params, paginate
from services.api.lookup import get_or_404
from shared.models import Node
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

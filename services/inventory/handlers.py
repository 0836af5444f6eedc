"""The inventory worker: ``server.inventory`` logs in with the credential that registered the
node, reads the server's system, processors, memory, NICs, storage and firmware in parallel, and
stores what changed. A BMC that fails halfway leaves the previous inventory in place."""

from __future__ import annotations

from services.inventory import store
from shared.bmc import attempts
from shared.bmc.access import BmcWorkRefused, ServerAccess, server_access
from shared.bmc.failures import code_for, failure_class, reason_or_retry
from shared.contracts.commands import ServerInventoryCommand
from shared.core.log import get_logger
from shared.lifecycle import node as node_lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter
from shared.messaging.streams import INVENTORY
from shared.redfish import CertificateMismatch, ComputerSystem, RedfishError
from shared.redfish.inventory import Inventory, read_inventory

log = get_logger(__name__)

router = CommandRouter(INVENTORY)


async def _access(ctx: CommandContext, server_id: int) -> ServerAccess | None:
    async with ctx.db.session() as session:
        server = await store.locked_server(session, server_id)
        if server is None:
            await session.commit()
            return None
        try:
            return await server_access(session, server)
        finally:
            await session.commit()


async def _fail(
    ctx: CommandContext,
    server_id: int,
    reason: str,
    cause: str,
    *,
    presented: str | None = None,
) -> None:
    """Record the failure (``cause``: its failure class, for metrics and the members' code);
    with ``presented``, the node's BMC presented that certificate instead of the trusted one,
    which stops BMC work for the whole node."""
    attempts.failed(cause)
    async with ctx.db.session() as session:
        server = await store.locked_server(session, server_id)
        node = (
            await node_lifecycle.locked(session, server.node_id)
            if presented is not None and server is not None and server.node_id is not None
            else None
        )
        if node is not None and presented is not None:
            node_lifecycle.certificate_changed(session, node, presented)
            reason = node.error or reason
        if server is not None:
            store.record_failure(session, server, reason, code_for(cause))
        await session.commit()
    log.warning("inventory.failed", server=server_id, reason=reason)


async def inventory_exhausted(
    cmd: ServerInventoryCommand, ctx: CommandContext, error: BaseException
) -> None:
    await _fail(
        ctx, cmd.server_id, f"gave up after {ctx.delivery} attempts: {error}", failure_class(error)
    )


async def _collect(ctx: CommandContext, access: ServerAccess) -> Inventory:
    password = ctx.runtime.credentials.decrypt(access.credential.password_encrypted)
    async with ctx.runtime.redfish.session(
        access.base_url,
        access.credential.username,
        password,
        access.tls,
        vendor=access.node.vendor,
    ) as bmc:
        system = ComputerSystem.parse(await bmc.get(access.system_path))
        return await read_inventory(bmc, system)


@router.command(
    ServerInventoryCommand.subject, ServerInventoryCommand, on_exhausted=inventory_exhausted
)
@attempts.observed("inventory")
async def collect_inventory(cmd: ServerInventoryCommand, ctx: CommandContext) -> None:
    try:
        access = await _access(ctx, cmd.server_id)
    except BmcWorkRefused as exc:
        await _fail(ctx, cmd.server_id, str(exc), exc.cause)
        return
    if access is None:
        attempts.skipped()
        return  # the server was deleted meanwhile
    try:
        inventory = await _collect(ctx, access)
    except CertificateMismatch as exc:
        presented = access.changed_certificate(exc)
        reason = f"BMC {access.bmc}: {exc}"
        await _fail(ctx, cmd.server_id, reason, "certificate", presented=presented)
        return
    except RedfishError as exc:
        reason = reason_or_retry(exc, ctx, access.bmc)
        await _fail(ctx, cmd.server_id, reason, failure_class(exc))
        return
    async with ctx.db.session() as session:
        server = await store.locked_server(session, cmd.server_id)
        if server is None:
            attempts.skipped()
            await session.commit()
            return
        changed = await store.record_inventory(session, server, inventory)
        await session.commit()
    log.info("inventory.collected", server=cmd.server_id, changed=changed)

"""The registrar worker: turns a discovered node into managed servers.

``node.register``: load the node's auth profile, log in with its credentials in order, read every
ComputerSystem, upsert one Server per system, mark the node ``registered`` — or ``error`` with a
reason a person can act on. Busy BMCs are retried with back-off (they recover), unreachable ones
a few times, refusals never.
"""

from __future__ import annotations

from sqlmodel import col, select

from services.registrar import records
from services.registrar.login import (
    CertificateChanged,
    RegistrationRefused,
    log_in_and_read_systems,
)
from shared.bmc import attempts
from shared.bmc.failures import failure_class, reason_or_retry
from shared.contracts.commands import NodeRegisterCommand, ServerInventoryCommand
from shared.core.log import get_logger
from shared.lifecycle import node as node_lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter
from shared.messaging.streams import REGISTRAR
from shared.models import AuthProfile, Credential
from shared.redfish import RedfishError

log = get_logger(__name__)

router = CommandRouter(REGISTRAR)


async def fail(
    cmd: NodeRegisterCommand,
    ctx: CommandContext,
    reason: str,
    cause: str,
    *,
    presented: str | None = None,
) -> None:
    """Record the failure (``cause``: its failure class, for metrics); with ``presented``, the
    BMC presented that certificate instead of the trusted one, and the node stops in
    ``certificate_changed`` instead of ``error``."""
    attempts.failed(cause)
    async with ctx.db.session() as session:
        node = await node_lifecycle.current(session, cmd.node_id, cmd.registration)
        if node is not None and presented is not None:
            node_lifecycle.certificate_changed(session, node, presented)
        elif node is not None:
            node_lifecycle.fail(session, node, reason)
        await session.commit()
    log.warning("registration.failed", node=cmd.node_id, reason=reason, presented=presented)


async def registration_exhausted(
    cmd: NodeRegisterCommand, ctx: CommandContext, error: BaseException
) -> None:
    await fail(cmd, ctx, f"gave up after {ctx.delivery} attempts: {error}", failure_class(error))


@router.command(
    NodeRegisterCommand.subject, NodeRegisterCommand, on_exhausted=registration_exhausted
)
@attempts.observed("registration")
async def register_node(cmd: NodeRegisterCommand, ctx: CommandContext) -> None:
    async with ctx.db.session() as session:
        node = await node_lifecycle.current(session, cmd.node_id, cmd.registration)
        if node is None:
            # Done by an earlier delivery, or superseded by a newer register request. If this
            # registration is the one that succeeded, make sure its first inventory was queued
            # (the earlier delivery may have died right after committing).
            attempts.skipped()
            await session.commit()
            await _queue_first_inventory(ctx, cmd, await records.registered_servers(ctx.db, cmd))
            return
        profile = (
            await session.get(AuthProfile, node.auth_profile_id) if node.auth_profile_id else None
        )
        credentials = (
            await session.exec(
                select(Credential)
                .where(col(Credential.auth_profile_id) == node.auth_profile_id)
                .order_by(col(Credential.order), col(Credential.id))
            )
        ).all()
        # Commit (not roll back) so the loaded rows stay usable outside the session.
        await session.commit()
    if profile is None:
        await fail(cmd, ctx, "the node's auth profile was deleted", "configuration")
        return

    try:
        logged_in = await log_in_and_read_systems(
            ctx.runtime.redfish, ctx.runtime.credentials, node, profile, credentials
        )
    except RegistrationRefused as exc:
        await fail(cmd, ctx, str(exc), exc.cause)
        return
    except CertificateChanged as exc:
        await fail(cmd, ctx, str(exc), "certificate", presented=exc.presented)
        return
    except RedfishError as exc:
        await fail(cmd, ctx, reason_or_retry(exc, ctx, node.ip), failure_class(exc))
        return

    async with ctx.db.session() as session:
        current = await node_lifecycle.current(session, cmd.node_id, cmd.registration)
        if current is None:
            attempts.skipped()
            await session.commit()
            return
        servers = await records.upsert_servers(session, current, logged_in.systems)
        node_lifecycle.succeed(
            session, current, logged_in.credential_id, servers, logged_in.certificate
        )
        await session.commit()
    await _queue_first_inventory(ctx, cmd, [s.id for s in servers if s.id is not None])
    log.info("registration.done", node=cmd.node_id, servers=len(servers))


async def _queue_first_inventory(
    ctx: CommandContext, cmd: NodeRegisterCommand, server_ids: list[int]
) -> None:
    # The token makes every delivery of one registration queue the same, deduplicated, commands.
    for server_id in server_ids:
        await ctx.publisher.command(
            ServerInventoryCommand(server_id=server_id, token=f"reg{cmd.registration}")
        )

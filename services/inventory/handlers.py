"""The inventory worker: ``server.inventory`` logs in with the credential that registered the
node, reads the server's system, processors, memory, NICs, storage and firmware in parallel, and
stores what changed. A BMC that fails halfway leaves the previous inventory in place."""

from __future__ import annotations

from dataclasses import dataclass

from services.inventory import store
from shared.bmc import attempts
from shared.bmc.access import BmcWorkRefused, changed_certificate, tls_policy
from shared.bmc.failures import code_for, failure_class, reason_or_retry
from shared.contracts.commands import ServerInventoryCommand
from shared.core.log import get_logger
from shared.lifecycle import node as node_lifecycle
from shared.messaging.consumer import CommandContext, CommandRouter
from shared.messaging.streams import INVENTORY
from shared.models import AuthProfile, Credential, Node
from shared.redfish import CertificateMismatch, ComputerSystem, RedfishError
from shared.redfish.inventory import Inventory, read_inventory
from shared.redfish.tls import TlsPolicy

log = get_logger(__name__)

router = CommandRouter(INVENTORY)


class CannotCollect(Exception):
    """Nothing to retry: the server's BMC access is not set up, or not trusted now (shown to
    the operator); ``cause`` is the failure class."""

    def __init__(self, message: str, cause: str = "configuration") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Access:
    node: Node
    profile: AuthProfile
    credential: Credential
    system_path: str

    def tls(self) -> TlsPolicy:
        """The TLS policy; raises ``CannotCollect`` while the node's certificate is untrusted,
        before anything (least of all a credential) is sent to the BMC."""
        try:
            return tls_policy(self.profile, self.node)
        except BmcWorkRefused as exc:
            raise CannotCollect(str(exc), exc.cause) from None


async def _access(ctx: CommandContext, server_id: int) -> Access | None:
    async with ctx.db.session() as session:
        server = await store.locked_server(session, server_id)
        if server is None:
            await session.commit()
            return None
        node = await session.get(Node, server.node_id) if server.node_id else None
        profile = (
            await session.get(AuthProfile, node.auth_profile_id)
            if node and node.auth_profile_id
            else None
        )
        credential = (
            await session.get(Credential, node.credential_id)
            if node and node.credential_id
            else None
        )
        await session.commit()
    if node is None or profile is None or credential is None:
        raise CannotCollect("no working BMC credential for this server; register its node again")
    return Access(node, profile, credential, server.system_path)


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


async def _collect(ctx: CommandContext, access: Access) -> Inventory:
    tls = access.tls()
    password = ctx.runtime.credentials.decrypt(access.credential.password_encrypted)
    async with ctx.runtime.redfish.session(
        access.node.url, access.credential.username, password, tls, vendor=access.node.vendor
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
    except CannotCollect as exc:
        await _fail(ctx, cmd.server_id, str(exc), exc.cause)
        return
    if access is None:
        attempts.skipped()
        return  # the server was deleted meanwhile
    try:
        inventory = await _collect(ctx, access)
    except CannotCollect as exc:
        await _fail(ctx, cmd.server_id, str(exc), exc.cause)
        return
    except CertificateMismatch as exc:
        presented = changed_certificate(access.profile, access.node, exc)
        reason = f"BMC {access.node.ip}: {exc}"
        await _fail(ctx, cmd.server_id, reason, "certificate", presented=presented)
        return
    except RedfishError as exc:
        reason = reason_or_retry(exc, ctx, access.node.ip)
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

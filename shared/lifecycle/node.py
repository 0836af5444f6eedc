"""A node's registration: ``discovered``/``registered``/``error`` → ``registering`` →
``registered`` or ``error``; and its certificate trust: any status → ``certificate_changed``
when the BMC presents a certificate other than the trusted one, back to ``registered`` (or
``discovered``) when a superuser accepts it (see ``shared.bmc.access`` for the trust model).

Every register request bumps ``registration``; the command carries it, so a command of an
earlier request is stale. Event versions come from the node's ``version``, bumped once per status
change, so a redelivered handler stages the same event ids again and JetStream drops the copies.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bmc.access import untrusted_reason
from shared.contracts import catalog
from shared.contracts.commands import NodeRegisterCommand
from shared.core.clock import utcnow
from shared.lifecycle.starting import commit_and_queue
from shared.messaging import outbox
from shared.models import Node, NodeStatus, Server
from shared.platform.runtime import Runtime

# What a start overwrites, put back if the broker refuses the command.
_STARTED_FIELDS = ("status", "error", "auth_profile_id", "version", "registration_started_at")


# Ids per statement: well under SQLite's and PostgreSQL's bound-parameter limits.
_BATCH = 500


async def start(
    session: AsyncSession, runtime: Runtime, nodes: Sequence[Node], auth_profile_id: int
) -> list[int]:
    """Put ``nodes`` into ``registering`` and queue their work; the ids of those started.

    One transaction and one pipelined publish for all of them, however many: a bulk register
    answers as fast as one. A node already ``registering``, or whose certificate changed (it
    gets no credential until the certificate is accepted), is left as it is. If the broker
    refuses the commands, every node is put back and ``BrokerUnavailableError`` is raised.
    """
    previous = {n.id: {name: getattr(n, name) for name in _STARTED_FIELDS} for n in nodes}
    ids = [n.id for n in nodes if n.id is not None]
    started: list[int] = []
    for first in range(0, len(ids), _BATCH):
        flipped = await session.exec(
            update(Node)
            .where(
                col(Node.id).in_(ids[first : first + _BATCH]),
                col(Node.status).not_in([NodeStatus.registering, NodeStatus.certificate_changed]),
            )
            .values(
                status=NodeStatus.registering,
                error=None,
                auth_profile_id=auth_profile_id,
                registration=Node.registration + 1,
                registration_started_at=utcnow(),
                version=Node.version + 1,
            )
            .returning(col(Node.id))
            # The nodes are re-read below; matching the session's objects against the id list
            # in Python would cost more than the statement.
            .execution_options(synchronize_session=False)
        )
        started.extend(flipped.scalars().all())
    if not started:
        return []
    fresh = await refreshed(session, started)
    events = []
    commands = []
    registrations = {}
    for node in fresh:
        assert node.id is not None
        event = catalog.node_event(node, "registering")
        outbox.stage(session, event)
        events.append(event)
        commands.append(NodeRegisterCommand(node_id=node.id, registration=node.registration))
        registrations[node.id] = node.registration

    async def revert(s: AsyncSession) -> None:
        for node_id, registration in registrations.items():
            await s.exec(
                update(Node)
                .where(col(Node.id) == node_id, col(Node.registration) == registration)
                .values(**previous[node_id])
            )

    await commit_and_queue(session, runtime, commands, revert=revert, started=events)
    return started


async def refreshed(session: AsyncSession, ids: Sequence[int]) -> list[Node]:
    """The nodes with these ids, their attributes re-read (one statement per batch of ids)."""
    nodes: list[Node] = []
    for first in range(0, len(ids), _BATCH):
        nodes.extend(
            (
                await session.exec(
                    select(Node)
                    .where(col(Node.id).in_(ids[first : first + _BATCH]))
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
    return nodes


async def locked(session: AsyncSession, node_id: int) -> Node | None:
    """The node, its row locked for this transaction and its attributes fresh."""
    # Writing the row first takes its lock (a row lock on PostgreSQL, the write lock on SQLite).
    await session.exec(
        update(Node).where(col(Node.id) == node_id).values(registration=Node.registration)
    )
    return await session.get(Node, node_id, populate_existing=True)


async def current(session: AsyncSession, node_id: int, registration: int) -> Node | None:
    """The node if this registration is still the one in progress; otherwise None."""
    # Locked, so two deliveries of one command cannot both record an outcome.
    node = await locked(session, node_id)
    if node is None or node.registration != registration or node.status != NodeStatus.registering:
        return None
    return node


def saw_certificate(node: Node, fingerprint: str) -> None:
    """Record the certificate the BMC presented (never changes which one is trusted)."""
    node.fingerprint = fingerprint
    node.fingerprint_changed = (
        node.trusted_fingerprint is not None and fingerprint != node.trusted_fingerprint
    )


def certificate_changed(session: AsyncSession, node: Node, presented: str) -> None:
    """Stop BMC work for ``node``: its BMC presented ``presented``, not the trusted certificate."""
    saw_certificate(node, presented)
    session.add(node)
    if node.status == NodeStatus.certificate_changed:
        return  # already stopped (and announced); only the certificate seen is new
    node.status = NodeStatus.certificate_changed
    node.error = untrusted_reason(node)
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "certificate_changed"))


class CertificateNotAccepted(Exception):
    """Accepting failed; the message says why (the node presents another certificate)."""


async def accept_certificate(session: AsyncSession, node_id: int, expected: str | None) -> Node:
    """Trust the certificate ``node`` presents now (``expected``, if given, must be it)."""
    node = await locked(session, node_id)
    assert node is not None
    if node.fingerprint is None:
        raise CertificateNotAccepted("No certificate has been seen for this node; scan it first.")
    if expected is not None and expected != node.fingerprint:
        raise CertificateNotAccepted(
            f"The node now presents the certificate with SHA-256 {node.fingerprint}, not the "
            "one given; check it again."
        )
    if node.status != NodeStatus.certificate_changed and not node.fingerprint_changed:
        return node  # already trusted: accepting again changes nothing
    node.trusted_fingerprint = node.fingerprint
    node.fingerprint_changed = False
    if node.status == NodeStatus.certificate_changed:
        node.status = NodeStatus.registered if node.credential_id else NodeStatus.discovered
        node.error = None
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "certificate_accepted"))
    return node


def succeed(
    session: AsyncSession,
    node: Node,
    credential_id: int,
    servers: list[Server],
    certificate: str | None,
) -> None:
    """Registered; ``certificate`` (the one the login talked to) becomes the trusted one."""
    if certificate is not None:
        node.fingerprint = node.trusted_fingerprint = certificate
        node.fingerprint_changed = False
    node.status = NodeStatus.registered
    node.error = None
    node.credential_id = credential_id
    node.registered_at = utcnow()
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "registered", servers=[s.id for s in servers]))


def fail(session: AsyncSession, node: Node, reason: str) -> None:
    node.status = NodeStatus.error
    node.error = reason
    node.version += 1
    session.add(node)
    outbox.stage(session, catalog.node_event(node, "error"))


async def fail_current(session: AsyncSession, node_id: int, registration: int, reason: str) -> bool:
    """End this registration in ``error`` with ``reason``; False if it is over or superseded."""
    node = await current(session, node_id, registration)
    if node is None:
        return False
    fail(session, node, reason)
    return True

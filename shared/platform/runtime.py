"""The connections a Racksmith process holds: database, broker, publisher.

The API and every worker build one ``Runtime``; ``racksmith up`` builds a single one and shares it
between the API and all workers in the same event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from contextlib import suppress
from functools import cached_property
from typing import Any

from faststream.nats import NatsBroker
from faststream.security import BaseSecurity, SASLPlaintext
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from sqlalchemy import text

from shared.artifacts.store import ArtifactStore, open_store
from shared.core.crypto import CredentialCipher
from shared.core.db import Database
from shared.core.log import get_logger
from shared.core.settings import Settings
from shared.messaging import outbox, streams
from shared.messaging.permissions import OUTBOX_WAKE, inbox_prefix
from shared.messaging.publish import Publisher
from shared.observability.messaging import broker_middlewares
from shared.redfish import ClientLimits, RedfishPool, SessionCache

log = get_logger(__name__)


def nats_security(settings: Settings) -> BaseSecurity | None:
    """The process's NATS credentials and TLS trust, as FastStream takes them."""
    context = (
        ssl.create_default_context(cafile=str(settings.nats_tls_ca))
        if settings.nats_tls_ca is not None
        else None
    )
    if settings.nats_user:
        password = settings.nats_password.get_secret_value() if settings.nats_password else ""
        return SASLPlaintext(settings.nats_user, password, ssl_context=context)
    return BaseSecurity(ssl_context=context) if context is not None else None


class Runtime:
    """``relays``: the entities whose events this process publishes from the outbox (None:
    all, for the embedded platform); see ``shared.messaging.permissions``."""

    def __init__(
        self, settings: Settings, nats_url: str, *, relays: frozenset[str] | None = None
    ) -> None:
        self.settings = settings
        self.nats_url = nats_url
        self.db = Database(settings.effective_database_url, echo=settings.database_echo)
        user = settings.nats_user
        self.broker = NatsBroker(
            nats_url,
            graceful_timeout=settings.shutdown_timeout_s,
            # Per-message "received/processed" lines at DEBUG; handler errors still surface.
            logger=logging.getLogger("faststream"),
            log_level=logging.DEBUG,
            max_reconnect_attempts=-1,
            security=nats_security(settings),
            # Replies to this process land in its own inboxes, which no other user may read.
            inbox_prefix=inbox_prefix(user) if user else "_INBOX",
            middlewares=broker_middlewares(),
        )
        self.publisher = Publisher(self.broker)
        self.outbox = outbox.Relayer(
            self.db, self.publisher, relays, self._wake_owners if relays else None
        )
        self.nats: NatsClient | None = None
        self._background: list[asyncio.Task[None]] = []

    @cached_property
    def credentials(self) -> CredentialCipher:
        """Decrypts BMC passwords; built on first use, which fails fast without a key in
        production mode (the API and the registrar touch it at start)."""
        return CredentialCipher.from_settings(self.settings)

    @cached_property
    def redfish(self) -> RedfishPool:
        """The process's Redfish client pool: the global cap on BMC requests lives here."""
        settings = self.settings
        return RedfishPool(
            ClientLimits(
                per_bmc=settings.redfish_per_bmc,
                total=settings.redfish_total,
                connect_timeout=settings.redfish_connect_timeout_s,
                read_timeout=settings.redfish_read_timeout_s,
            )
        )

    @cached_property
    def redfish_sessions(self) -> SessionCache:
        """Logged-in BMC sessions reused across a job's steps (logged out when idle)."""
        return SessionCache(self.redfish)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """Where firmware binaries and OS images are kept (``RACKSMITH_ARTIFACT_STORE``)."""
        return open_store(self.settings)

    async def connect(self) -> None:
        """Connect the broker and make sure streams and consumers exist (no consuming yet)."""
        self.nats = await self.broker.connect()
        self.publisher.attach(self.nats)
        await streams.declare(self.nats.jetstream(), self.settings)
        if self.outbox.entities:
            await self.nats.subscribe(OUTBOX_WAKE, cb=self._on_wake)
        self.spawn(self.outbox.sweep_forever())

    async def _wake_owners(self) -> None:
        if self.nats is not None:
            await self.nats.publish(OUTBOX_WAKE, b"")

    async def _on_wake(self, _: Msg) -> None:
        try:
            await self.outbox.relay(woken=True)
        except Exception as exc:  # the sweep retries
            log.warning("outbox.relay_failed", error=str(exc))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background for the life of this runtime (cancelled on close)."""
        self._background.append(asyncio.create_task(work))

    async def start_consuming(self) -> None:
        """Start every subscriber attached to the broker (workers)."""
        await self.broker.start()

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with suppress(asyncio.CancelledError):
                await task
        try:
            await self.broker.stop()
        except Exception as exc:  # a broker that is already gone must not block shutdown
            log.warning("broker.stop_failed", error=repr(exc))
        if "redfish_sessions" in self.__dict__:
            await self.redfish_sessions.close()
        await self.db.dispose()

    async def database_ready(self) -> bool:
        try:
            async with self.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness.database_unreachable", error=str(exc))
            return False
        return True

    def broker_ready(self) -> bool:
        return self.nats is not None and self.nats.is_connected

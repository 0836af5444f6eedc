"""First-start data: the default group and pool, and the admin account."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel import select

from shared.core.db import Database
from shared.core.security import hash_password
from shared.core.settings import Settings
from shared.models import Group, Pool, User
from shared.models.pools import DEFAULT_POOL


@dataclass(frozen=True)
class AdminAccount:
    username: str
    # Only set when this call created the account with a generated password: shown once.
    generated_password: str | None
    created: bool


async def ensure_admin(db: Database, settings: Settings) -> AdminAccount:
    async with db.session() as session:
        existing = (
            await session.exec(select(User).where(User.username == settings.admin_username))
        ).one_or_none()
        if existing is not None:
            return AdminAccount(settings.admin_username, None, created=False)
        configured = settings.admin_password.get_secret_value() if settings.admin_password else None
        password = configured or secrets.token_urlsafe(12)
        session.add(
            User(
                username=settings.admin_username,
                password_hash=hash_password(password),
                is_superuser=True,
            )
        )
        await session.commit()
        return AdminAccount(settings.admin_username, None if configured else password, created=True)


async def create_user(
    db: Database, username: str, password: str, *, email: str = "", superuser: bool = True
) -> None:
    async with db.session() as session:
        session.add(
            User(
                username=username,
                email=email,
                password_hash=hash_password(password),
                is_superuser=superuser,
            )
        )
        await session.commit()


DEFAULT_GROUP = "default"


async def ensure_defaults(db: Database) -> None:
    """The default group and its default pool, so a new install can hand out servers at once
    (the guide's walkthrough creates its pool with ``"group": 1``)."""
    async with db.session() as session:
        group = (await session.exec(select(Group).where(Group.name == DEFAULT_GROUP))).first()
        if group is None:
            group = Group(name=DEFAULT_GROUP)
            session.add(group)
            await session.flush()
        pool = (await session.exec(select(Pool).where(Pool.name == DEFAULT_POOL))).first()
        if pool is None:
            session.add(
                Pool(name=DEFAULT_POOL, description="Created at installation.", group_id=group.id)
            )
        await session.commit()

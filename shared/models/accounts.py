"""Users, groups and their membership.

Groups are how access is granted later (a pool belongs to a group); superusers bypass them.
"""

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import Field, Relationship, SQLModel

from shared.core.clock import utcnow
from shared.models.base import NEVER_REUSE_IDS, reject_null


class GroupMembership(SQLModel, table=True):
    __tablename__ = "group_membership"

    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id", primary_key=True, ondelete="CASCADE", index=True)


class GroupBase(SQLModel):
    name: str = Field(min_length=1, max_length=150)


class Group(GroupBase, table=True):
    __tablename__ = "group"
    # A new group must not inherit a deleted one's id: pool events name their group by id, and
    # whoever is in a group hears its pools' events.
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=150, unique=True)
    users: list["User"] = Relationship(back_populates="groups", link_model=GroupMembership)


class UserBase(SQLModel):
    username: str = Field(min_length=1, max_length=150)
    email: str = Field(default="", max_length=254, index=True)
    is_superuser: bool = False
    is_active: bool = True


class User(UserBase, table=True):
    __tablename__ = "user"
    # Tokens name their user by id: a new account must never answer to a deleted one's tokens.
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=150, unique=True)
    password_hash: str = Field(max_length=255)
    date_joined: datetime = Field(default_factory=utcnow, index=True)
    last_login: datetime | None = Field(default=None, index=True)
    # Carried in every token (`ver`); raising it ends every token issued before (password
    # change, deactivation, lost access). See services.api.auth.
    token_version: int = Field(default=1)
    groups: list[Group] = Relationship(back_populates="users", link_model=GroupMembership)

    def revoke_tokens(self) -> None:
        """Every access and refresh token issued to this user so far stops working."""
        self.token_version += 1


class LoginSession(SQLModel, table=True):
    """One ``POST /api/token/``: the refresh tokens it leads to rotate within it.

    Only the newest refresh token of a session is usable (``refresh_jti``); presenting an older
    one means it was copied, so the whole session is revoked. Rows outlive their last refresh
    token only until ``expires_at``, then they are pruned.
    """

    __tablename__ = "login_session"

    id: str = Field(primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    refresh_jti: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    revoked_at: datetime | None = None


# --- API shapes (not tables) -------------------------------------------------------------------

USERNAME_PATTERN = r"^[\w.@+-]+$"
EMAIL_PATTERN = r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$"


class UserCreate(BaseModel):
    username: str = PField(min_length=1, max_length=150, pattern=USERNAME_PATTERN)
    password: str = PField(min_length=8, max_length=128)
    email: str = PField(default="", max_length=254, pattern=EMAIL_PATTERN)
    is_superuser: bool = False
    is_active: bool = True
    groups: list[int] = PField(default_factory=list)


class UserReplace(BaseModel):
    """PUT: every writable field; omitted ones reset to their defaults (password kept if absent)."""

    username: str = PField(min_length=1, max_length=150, pattern=USERNAME_PATTERN)
    password: str | None = PField(default=None, min_length=8, max_length=128)
    email: str = PField(default="", max_length=254, pattern=EMAIL_PATTERN)
    is_superuser: bool = False
    is_active: bool = True
    groups: list[int] = PField(default_factory=list)


class UserUpdate(BaseModel):
    """PATCH: only the fields sent are touched."""

    _not_null = reject_null("username", "password", "email", "is_superuser", "is_active", "groups")

    username: str | None = PField(
        default=None, min_length=1, max_length=150, pattern=USERNAME_PATTERN
    )
    password: str | None = PField(default=None, min_length=8, max_length=128)
    email: str | None = PField(default=None, max_length=254, pattern=EMAIL_PATTERN)
    is_superuser: bool | None = None
    is_active: bool | None = None
    groups: list[int] | None = None


class UserPublic(BaseModel):
    username: str
    email: str
    is_superuser: bool
    is_active: bool
    id: int
    groups: list[int]
    date_joined: datetime
    last_login: datetime | None

    @classmethod
    def of(cls, user: User) -> "UserPublic":
        assert user.id is not None
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            is_superuser=user.is_superuser,
            is_active=user.is_active,
            groups=sorted(g.id for g in user.groups if g.id is not None),
            date_joined=user.date_joined,
            last_login=user.last_login,
        )


class GroupCreate(BaseModel):
    name: str = PField(min_length=1, max_length=150)
    members: list[int] = PField(default_factory=list)


class GroupUpdate(BaseModel):
    name: str | None = PField(default=None, min_length=1, max_length=150)
    members: list[int] | None = None


class GroupPublic(BaseModel):
    name: str
    id: int
    members: list[int]

    @classmethod
    def of(cls, group: Group) -> "GroupPublic":
        assert group.id is not None
        return cls(id=group.id, name=group.name, members=sorted(u.id for u in group.users if u.id))

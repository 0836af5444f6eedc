"""Users, groups and their membership.

Groups are how access is granted later (a pool belongs to a group); superusers bypass them.
"""

from datetime import datetime

from pydantic import BaseModel
from pydantic import Field as PField
from sqlmodel import Field, Relationship, SQLModel

from shared.core.clock import utcnow
from shared.models.base import reject_null


class GroupMembership(SQLModel, table=True):
    __tablename__ = "group_membership"

    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="group.id", primary_key=True, ondelete="CASCADE", index=True)


class GroupBase(SQLModel):
    name: str = Field(min_length=1, max_length=150)


class Group(GroupBase, table=True):
    __tablename__ = "group"

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

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=150, unique=True)
    password_hash: str = Field(max_length=255)
    date_joined: datetime = Field(default_factory=utcnow, index=True)
    last_login: datetime | None = Field(default=None, index=True)
    groups: list[Group] = Relationship(back_populates="users", link_model=GroupMembership)


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
    """PUT: the required fields; omitted optional ones keep their values (DRF serializers)."""

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

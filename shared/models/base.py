"""The metadata every table shares, with constraint names fixed so migrations can refer to them."""

from typing import Any

from pydantic import field_validator
from sqlmodel import SQLModel

metadata = SQLModel.metadata
metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# For tables whose ids appear in events and API URLs. SQLite otherwise hands a deleted row's id
# (the highest) to the next insert: a new pool would reuse the old one's id, its events' ids
# (`evt:pool:5:created:1`) would repeat the old ones and be dropped as duplicates, and a CMDB
# keyed on the id would merge two pools. PostgreSQL sequences never reuse ids anyway.
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


def reject_null(*fields: str) -> Any:
    """A validator for PATCH shapes: these fields may be omitted, but not sent as null (their
    columns are NOT NULL), which answers 400 naming the field instead of a database error."""

    def check(value: Any) -> Any:
        if value is None:
            raise ValueError("This field may not be null.")
        return value

    return field_validator(*fields, mode="before")(check)

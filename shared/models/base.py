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


def reject_null(*fields: str) -> Any:
    """A validator for PATCH shapes: these fields may be omitted, but not sent as null (their
    columns are NOT NULL), which answers 400 naming the field instead of a database error."""

    def check(value: Any) -> Any:
        if value is None:
            raise ValueError("This field may not be null.")
        return value

    return field_validator(*fields, mode="before")(check)

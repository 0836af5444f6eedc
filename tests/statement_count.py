"""Counting what a request does to the database: its SQL statements and its commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from shared.platform.runtime import Runtime

_WRITES = {"INSERT", "UPDATE", "DELETE"}


@dataclass
class Statements:
    sql: list[str] = field(default_factory=list)
    # Committed transactions that wrote something (the outbox relay's own aside).
    write_transactions: int = 0
    _writing: set[int] = field(default_factory=set)


@contextmanager
def count_statements(runtime: Runtime) -> Iterator[Statements]:
    counted = Statements()
    engine = runtime.db.engine.sync_engine

    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The runtime's outbox sweep runs every 2 s on the same engine; it is not the request's.
        if "outbox_event" not in statement:
            counted.sql.append(statement)
            if statement.lstrip().split(" ", 1)[0].upper() in _WRITES:
                counted._writing.add(id(conn))

    def commit(conn: Any) -> None:
        if id(conn) in counted._writing:
            counted._writing.discard(id(conn))
            counted.write_transactions += 1

    def rollback(conn: Any) -> None:
        counted._writing.discard(id(conn))

    hooks = [("before_cursor_execute", record), ("commit", commit), ("rollback", rollback)]
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield counted
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)

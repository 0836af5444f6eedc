"""Which events a webhook receives: the catalog's types it names, or every event if none."""

from __future__ import annotations

from collections.abc import Sequence

from shared.contracts import catalog


def normalize(names: Sequence[str]) -> list[str]:
    """Full type names for ``names`` (short ``node.registered`` forms accepted), each once.

    Raises ``catalog.UnknownEventTypeError`` naming the first type the catalog does not list —
    a typo would otherwise be a webhook that silently never fires.
    """
    return list(dict.fromkeys(catalog.lookup(name.strip()).type for name in names))


def matches(event_types: Sequence[str], event_type: str) -> bool:
    return not event_types or event_type in event_types

"""``$expand``, as the service root's ``ProtocolFeaturesSupported.ExpandQuery`` advertises it.

A BMC expands what it says it can: ``*`` every hyperlink, ``.`` those outside ``Links``, ``~``
those inside it, each optionally ``($levels=n)`` (1 by default, at most ``MaxLevels``). A
hyperlink is a reference object (only ``@odata.id``); expanding it puts the resource's body in
its place. A form the root does not advertise, or any ``$expand`` on a BMC that advertises none,
is answered 501, as Redfish requires for unsupported query parameters.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bmclab.tree import JsonObject

_FORM = re.compile(r"^([*.~])(?:\(\$levels=(\d+)\))?$")
_TERMS = {"*": "ExpandAll", ".": "NoLinks", "~": "Links"}

Lookup = Callable[[str], JsonObject | None]


@dataclass(frozen=True)
class Expansion:
    kind: str  # "*", "." or "~"
    levels: int


class Unsupported(ValueError):
    """The ``$expand`` asked for is not one this BMC advertises."""


def parse(query: str, root: JsonObject) -> Expansion:
    """The expansion ``query`` asks for, checked against what ``root`` advertises."""
    support = (root.get("ProtocolFeaturesSupported") or {}).get("ExpandQuery")
    if not isinstance(support, dict):
        raise Unsupported("$expand is not supported")
    match = _FORM.match(query)
    if match is None:
        raise Unsupported(f"$expand={query} is not a supported expansion")
    kind, levels = match.group(1), match.group(2)
    if not support.get(_TERMS[kind], False):
        raise Unsupported(f"$expand={kind} is not supported")
    if levels is not None and not support.get("Levels", False):
        raise Unsupported("$levels is not supported")
    depth = 1 if levels is None else int(levels)
    if not 1 <= depth <= int(support.get("MaxLevels", 1)):
        raise Unsupported(f"$levels={depth} is out of range")
    return Expansion(kind, depth)


def expand(body: JsonObject, expansion: Expansion, lookup: Lookup) -> JsonObject:
    """A copy of ``body`` with its hyperlinks expanded ``expansion.levels`` deep."""
    return _resource(copy.deepcopy(body), expansion, lookup, expansion.levels)


def _resource(body: JsonObject, expansion: Expansion, lookup: Lookup, levels: int) -> JsonObject:
    for key, item in body.items():
        in_links = key == "Links"
        if expansion.kind == "." and in_links:
            continue
        if expansion.kind == "~" and not in_links:
            continue
        body[key] = _value(item, expansion, lookup, levels)
    return body


def _value(item: Any, expansion: Expansion, lookup: Lookup, levels: int) -> Any:
    if isinstance(item, list):
        return [_value(i, expansion, lookup, levels) for i in item]
    if not isinstance(item, dict):
        return item
    ref = item.get("@odata.id")
    if len(item) == 1 and isinstance(ref, str):
        target = lookup(ref)
        if target is None:
            return item  # a broken link stays a link
        # Deeper levels follow the same rule inside the expanded resource (``~`` expands the
        # Links of what it expanded).
        expanded = copy.deepcopy(target)
        return _resource(expanded, expansion, lookup, levels - 1) if levels > 1 else expanded
    return {key: _value(v, expansion, lookup, levels) for key, v in item.items()}

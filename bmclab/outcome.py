"""What an action or a change request on a simulated BMC came to, before it becomes HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field

from bmclab.tree import JsonObject


@dataclass
class Outcome:
    status: int
    body: JsonObject | None = None
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    # Registry MessageId of an error: a bare Base message name or a full "Registry.x.y.Name".
    message_id: str = "ActionParameterValueError"
    message_args: tuple[str, ...] = ()
    resolution: str = "None"

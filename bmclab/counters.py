"""What a BMC was asked to change and what it did, for tests that check a client's effects.

A job engine that must not repeat a BMC POST after a crash is tested by counting POSTs here:
``received`` counts every request that passed authentication (refused ones included),
``applied`` only those that changed something.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counters:
    posts: Counter[str] = field(default_factory=Counter)  # by path, every POST received
    patches: Counter[str] = field(default_factory=Counter)  # by path, every PATCH received
    # by action name, e.g. ComputerSystem.Reset
    actions: Counter[str] = field(default_factory=Counter)
    reset_types: Counter[str] = field(default_factory=Counter)  # ResetType received
    resets_applied: Counter[str] = field(default_factory=Counter)  # ResetType accepted (2xx)
    patches_applied: Counter[str] = field(default_factory=Counter)  # by path, PATCH accepted
    boots: int = 0  # host boots completed (power reached On through POST)
    overrides_consumed: int = 0  # one-time boot overrides used up by a boot
    dropped: int = 0  # responses a drop_*/hang_* fault withheld

    def post(self, path: str, action: str | None, reset_type: str | None) -> None:
        self.posts[path] += 1
        if action:
            self.actions[action] += 1
        if reset_type:
            self.reset_types[reset_type] += 1

    def clear(self) -> None:
        for value in vars(self).values():
            if isinstance(value, Counter):
                value.clear()
        self.boots = self.overrides_consumed = self.dropped = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            name: dict(value) if isinstance(value, Counter) else value
            for name, value in vars(self).items()
        }

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
    media_inserts: int = 0  # InsertMedia calls that got past the vendor's checks
    ghost_mounts: int = 0  # of those, answered 204 with nothing mounted (ghost_mount)
    media_bytes: int = 0  # bytes of images read from their servers
    installer_boots: int = 0  # boots into an installer image
    installer_stuck: int = 0  # installers that will not finish (unreadable image, hang)
    seeds_read: int = 0  # cloud-init seeds the installer found
    calls_home: int = 0  # phone_home POSTs answered 2xx
    deployed_os: str | None = None  # the image file name the last finished install came from

    def post(self, path: str, action: str | None, reset_type: str | None) -> None:
        self.posts[path] += 1
        if action:
            self.actions[action] += 1
        if reset_type:
            self.reset_types[reset_type] += 1

    def clear(self) -> None:
        for name, value in list(vars(self).items()):
            if isinstance(value, Counter):
                value.clear()
            else:
                setattr(self, name, None if name == "deployed_os" else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: dict(value) if isinstance(value, Counter) else value
            for name, value in vars(self).items()
        }

"""Child processes that must not outlive the process that started them.

A ``racksmith up`` killed with SIGKILL (an OOM kill, a CI timeout) cannot stop its nats-server;
left alone it would keep its port and its store directory locked until someone notices.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

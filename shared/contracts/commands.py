"""Command payloads: work for exactly one worker kind, on ``racksmith.cmd.<family>.<action>``.

Each command knows its subject and its deterministic message id, so whoever publishes it (the API,
or a worker fanning out) gets JetStream's deduplication for free.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from shared.contracts.subjects import command_subject


class Command(BaseModel):
    subject: ClassVar[str]

    def msg_id(self) -> str:
        raise NotImplementedError


class ScanRangeCommand(Command):
    """Expand one run of a scan range into chunk commands."""

    subject: ClassVar[str] = command_subject("scan", "range")
    scan_range_id: int
    run: int

    def msg_id(self) -> str:
        return f"scan:{self.scan_range_id}:{self.run}"


class ScanChunkCommand(Command):
    """Probe one slice of a range's addresses on its ports."""

    subject: ClassVar[str] = command_subject("scan", "chunk")
    scan_range_id: int
    run: int
    index: int

    def msg_id(self) -> str:
        return f"scan:{self.scan_range_id}:{self.run}:chunk:{self.index}"


class NodeRegisterCommand(Command):
    """Log in to a node's BMC with its auth profile and create its servers."""

    subject: ClassVar[str] = command_subject("node", "register")
    node_id: int
    registration: int

    def msg_id(self) -> str:
        return f"register:{self.node_id}:{self.registration}"


class ServerInventoryCommand(Command):
    """Collect one server's hardware and firmware inventory.

    ``token`` says why (``reg3``: after registration 3, ``sched:<slot>``: the periodic
    re-collection, ``api:<uuid>``: a refresh request, ``accept:<version>``: a node's new
    certificate was accepted) and makes the message id deterministic for
    the two automatic triggers, so replicas scheduling the same slot publish it once.
    """

    subject: ClassVar[str] = command_subject("server", "inventory")
    server_id: int
    token: str

    def msg_id(self) -> str:
        return f"inventory:{self.server_id}:{self.token}"


class JobTickCommand(Command):
    """Move one job forward by one step (or one look at the BMC).

    The same message drives the job for its whole life: after each step the jobs worker asks
    JetStream to deliver it again later. ``ticket`` says which message that is; waking a job
    (cancel, the watchdog) publishes a new ticket and the older message is dropped when it next
    arrives.
    """

    subject: ClassVar[str] = command_subject("job", "tick")
    job_id: int
    ticket: int

    def msg_id(self) -> str:
        return f"job:{self.job_id}:tick:{self.ticket}"


class ArtifactFetchCommand(Command):
    """Download an artifact from its ``source_url`` into the store, checking its SHA-256.

    ``fetch`` is the artifact's download counter when this one was asked for, so a command of an
    earlier download (or of an artifact deleted since) does nothing.
    """

    subject: ClassVar[str] = command_subject("artifact", "fetch")
    artifact_id: int
    fetch: int

    def msg_id(self) -> str:
        return f"fetch:{self.artifact_id}:{self.fetch}"

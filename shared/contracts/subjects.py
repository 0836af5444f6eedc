"""Subject names. Commands are work for exactly one worker kind; events are facts for anyone."""

from __future__ import annotations

COMMAND_PREFIX = "racksmith.cmd"
EVENT_PREFIX = "racksmith.evt"

# Each worker kind owns one subtree of commands; its durable consumer filters on it.
SCAN_COMMANDS = f"{COMMAND_PREFIX}.scan.>"
NODE_COMMANDS = f"{COMMAND_PREFIX}.node.>"
SERVER_COMMANDS = f"{COMMAND_PREFIX}.server.>"
JOB_COMMANDS = f"{COMMAND_PREFIX}.job.>"
ARTIFACT_COMMANDS = f"{COMMAND_PREFIX}.artifact.>"


def command_subject(family: str, action: str) -> str:
    return f"{COMMAND_PREFIX}.{family}.{action}"


def event_subject(entity: str, entity_id: int | str, change: str) -> str:
    return f"{EVENT_PREFIX}.{entity}.{entity_id}.{change}"


# Requests answered by a worker over NATS request/reply (not streamed: nobody waits for a late
# answer). The webhooks worker sends `test/` deliveries: only it may reach receivers.
REQUEST_PREFIX = "racksmith.req"
WEBHOOK_TEST_REQUESTS = f"{REQUEST_PREFIX}.webhook.test"

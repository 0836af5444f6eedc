"""Who may publish and subscribe what on NATS: one user per component, declared once.

The embedded nats-server's configuration is generated from this table, and the Kubernetes
manifests' NATS users are checked against it (``racksmith nats-permissions`` prints it).

Design:

* **Commands** are published by the components that queue work: the API (scans, registrations,
  refreshes, artifact downloads, jobs' first ticks and cancels' wake-ups), the scanner (its
  chunks), the registrar and the inventory scheduler (collections), the jobs worker (its
  watchdog's wake-ups).
* **Events** of an entity are published by the one component that owns that entity: scan ranges
  by the scanner, nodes by the registrar, servers by the inventory worker, jobs by the jobs
  worker, webhooks by the webhooks worker; pools and switches (changed only through the API)
  and the firmware catalog and OS images (added, changed and deleted through the API; the
  fetcher only marks a download ``ready`` or ``invalid``) by the API. Any component may *stage*
  an event in the outbox with its change (the API stages ``node.registering`` and
  ``job.created``, the fetcher ``firmware.ready``, the jobs worker ``server.power_changed``
  and its watchdog's ``scan_range.failed``); the owner's
  relay publishes it (``shared.messaging.outbox``), woken by ``OUTBOX_WAKE``. One owner per
  entity also keeps each entity's events in commit order. So a component holding the scanner's
  credentials cannot forge a pool or a node event, and the internet-facing API cannot publish a
  node, server or scan event at all.
* **JetStream management** (``$JS.API``) is open to every component — each declares the streams,
  consumers and the login-throttle bucket at start, and reads its consumers' info when scraped —
  except deleting or purging streams and messages. Acks are limited to the component's own
  consumer. Only the API writes the login-throttle bucket (``$KV.racksmith_login_throttle``).
* **Replies**: every component has its own inbox prefix (``_INBOX_<user>``), so none can read
  another's replies (the API's event list reads through ephemeral consumers delivered there,
  PubAcks and the test requests' answers too). The workers' pull subscriptions are delivered
  to FastStream's default ``_INBOX`` prefix, which the workers may therefore read: commands
  carry ids only.
* ``events`` is for other systems: it reads ``RACKSMITH_EVENTS`` (durable or ephemeral
  consumers, plain subscriptions) and publishes nothing else.
* ``platform`` is the embedded ``racksmith up``: one process holding every role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from shared.contracts.subjects import (
    EVENT_PREFIX,
    WEBHOOK_TEST_REQUESTS,
    command_subject,
)
from shared.messaging.streams import COMMANDS_STREAM, EVENTS_STREAM, LOGIN_THROTTLE_BUCKET

# Core NATS (not streamed): "the outbox holds events you publish; relay now".
OUTBOX_WAKE = "racksmith.outbox.wake"

_JS_ADMIN_DENY = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
)


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class Component:
    user: str
    commands: tuple[str, ...] = ()
    # Entities whose events this component publishes (and whose outbox rows it relays).
    entities: tuple[str, ...] = ()
    # Its durable consumers, as (stream, durable name), for acks.
    consumers: tuple[tuple[str, str], ...] = ()
    publishes: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    answers_requests: bool = False
    relays: bool = True

    def permissions(self) -> dict[str, Any]:
        publish = [
            *self.commands,
            *(f"{EVENT_PREFIX}.{entity}.>" for entity in self.entities),
            *(f"$JS.ACK.{stream}.{durable}.>" for stream, durable in self.consumers),
            *self.publishes,
        ]
        subscribe = [f"{inbox_prefix(self.user)}.>", *self.subscribes]
        if self.consumers:
            # FastStream's pull subscriptions take their delivery inbox from the default prefix.
            subscribe.append("_INBOX.>")
        if self.relays:
            publish.append(OUTBOX_WAKE)
            if self.entities:
                subscribe.append(OUTBOX_WAKE)
        rules: dict[str, Any] = {
            "publish": {"allow": ["$JS.API.>", *publish], "deny": list(_JS_ADMIN_DENY)},
            "subscribe": {"allow": subscribe},
        }
        if self.answers_requests:
            rules["allow_responses"] = True
        return rules


COMPONENTS: dict[str, Component] = {
    c.user: c
    for c in (
        Component(
            "api",
            commands=(
                command_subject("scan", "range"),
                command_subject("node", "register"),
                command_subject("server", "inventory"),
                command_subject("artifact", "fetch"),
                command_subject("job", "tick"),
            ),
            entities=("pool", "switch", "firmware", "os_image"),
            publishes=(WEBHOOK_TEST_REQUESTS, f"$KV.{LOGIN_THROTTLE_BUCKET}.>"),
            # register/ waits for the node's outcome events, power/, boot/ and cancel/ (?wait=)
            # for the job's.
            subscribes=(f"{EVENT_PREFIX}.node.>", f"{EVENT_PREFIX}.job.>"),
        ),
        Component(
            "scanner",
            commands=(command_subject("scan", "chunk"),),
            entities=("scan_range",),
            consumers=((COMMANDS_STREAM, "scanner"),),
        ),
        Component(
            "registrar",
            commands=(command_subject("server", "inventory"),),
            entities=("node",),
            consumers=((COMMANDS_STREAM, "registrar"),),
        ),
        Component(
            "inventory",
            commands=(command_subject("server", "inventory"),),
            entities=("server",),
            consumers=((COMMANDS_STREAM, "inventory"),),
        ),
        # Downloads change catalog entries the API owns: it stages their events and wakes it.
        Component("fetcher", consumers=((COMMANDS_STREAM, "fetcher"),)),
        # Its own ticks (a job is rescheduled by a delayed nak; the watchdog wakes a stalled
        # one with a new ticket). What a job changes on a server (server.power_changed) and
        # what the watchdog ends (scan ranges, registrations) are staged here and published by
        # their owners.
        Component(
            "jobs",
            commands=(command_subject("job", "tick"),),
            entities=("job",),
            consumers=((COMMANDS_STREAM, "jobs"),),
        ),
        Component(
            "webhooks",
            entities=("webhook",),
            consumers=((EVENTS_STREAM, "webhooks"),),
            subscribes=(WEBHOOK_TEST_REQUESTS,),
            answers_requests=True,
        ),
        # `racksmith migrate`: declares streams and consumers.
        Component("migrate", relays=False),
    )
}

# Reading events only: no JetStream management beyond its own consumers on the events stream.
EVENTS_READER = "events"
PLATFORM = "platform"


def _reader_permissions() -> dict[str, Any]:
    api = "$JS.API"
    return {
        "publish": {
            "allow": [
                f"{api}.INFO",
                f"{api}.STREAM.NAMES",
                f"{api}.STREAM.INFO.{EVENTS_STREAM}",
                f"{api}.CONSUMER.*.{EVENTS_STREAM}",
                f"{api}.CONSUMER.*.{EVENTS_STREAM}.>",
                f"{api}.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.>",
                f"{api}.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.>",
                f"$JS.ACK.{EVENTS_STREAM}.>",
                "$JS.FC.>",
            ]
        },
        "subscribe": {"allow": ["_INBOX.>", f"{EVENT_PREFIX}.>"]},
    }


def _platform_permissions() -> dict[str, Any]:
    return {
        "publish": {"allow": [">"], "deny": list(_JS_ADMIN_DENY)},
        "subscribe": {"allow": [">"]},
        "allow_responses": True,
    }


USERS: tuple[str, ...] = (*COMPONENTS, EVENTS_READER, PLATFORM)


def permissions(user: str) -> dict[str, Any]:
    if user == EVENTS_READER:
        return _reader_permissions()
    if user == PLATFORM:
        return _platform_permissions()
    return COMPONENTS[user].permissions()


def authorization(passwords: dict[str, str]) -> dict[str, Any]:
    """The nats-server ``authorization`` block for these users."""
    return {
        "users": [
            {"user": user, "password": passwords[user], "permissions": permissions(user)}
            for user in USERS
            if user in passwords
        ]
    }


def relayed_entities(kinds: Iterable[str]) -> frozenset[str]:
    """The entities whose events a process running these component kinds relays."""
    return frozenset(e for kind in kinds for e in COMPONENTS[kind].entities)


# --- for servers Racksmith does not start (Kubernetes) -----------------------------------------

# The users a deployment creates: every component, and the reader for other systems.
DEPLOYED_USERS: tuple[str, ...] = (*COMPONENTS, EVENTS_READER)


def password_variable(user: str) -> str:
    """The environment variable the NATS server reads ``user``'s password from."""
    return f"{user.upper()}_PASSWORD"


def server_config(style: str) -> str:
    """The deployed users as the NATS server takes them, passwords read from its environment:
    ``conf`` (a nats-server configuration file) or ``helm`` (values of the official chart)."""
    if style == "conf":
        marker = {u: f"__{password_variable(u)}__" for u in DEPLOYED_USERS}
        text = json.dumps({"authorization": authorization(marker)}, indent=2)
        # Unquoted, `$NAME` is a variable of the NATS configuration format (quoted, a literal).
        return re.sub(r'"__([A-Z_]+)__"', r"$\1", text) + "\n"
    passwords = {u: f"<< ${password_variable(u)} >>" for u in DEPLOYED_USERS}
    values = {"config": {"merge": {"authorization": authorization(passwords)}}}
    return str(yaml.safe_dump(values, sort_keys=False, width=200))

"""The ``racksmith`` command line.

Every setting is an environment variable (``RACKSMITH_*``, see shared/core/settings.py); the flags
here override the few an operator types most often.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet
from pydantic import SecretStr

from bmclab import cli as bmclab_cli
from bmclab.fleet import LabConfig
from services.processes import (
    StartupError,
    run_api,
    run_artifacts,
    run_migrate,
    run_up,
    run_worker,
)
from services.workers import KINDS as WORKER_KINDS
from shared.core.log import configure_logging
from shared.core.settings import Settings


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="state directory (RACKSMITH_STATE_DIR, default ./.racksmith)",
    )


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="API listen address (RACKSMITH_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="API port (RACKSMITH_PORT, default 8000)")


def _add_artifact_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifact-host",
        help="artifact server listen address (RACKSMITH_ARTIFACT_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--artifact-port",
        type=int,
        help="artifact server port (RACKSMITH_ARTIFACT_PORT, default 8001)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="racksmith",
        description="Racksmith: discover, register, inventory and organise physical servers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run everything in one process (embedded NATS, SQLite, API, all workers)",
        description="Start a child nats-server (unless RACKSMITH_NATS_URL is set), migrate the "
        "database, create the admin user on first start, and serve the API with every worker.",
    )
    _add_common(up)
    _add_listen(up)
    _add_artifact_listen(up)
    up.add_argument("--nats-port", type=int, help="embedded NATS port (default: a free one)")
    up.add_argument(
        "--lab",
        type=int,
        default=0,
        metavar="N",
        help="also start a BMC lab of N simulated Redfish BMCs and print the matching "
        "scan-range and auth-profile JSON",
    )
    up.add_argument("--lab-network", default="127.0.10.0/24", help="loopback network of the lab")
    up.add_argument("--lab-port", type=int, default=8443, help="HTTPS port of every lab BMC")
    up.add_argument(
        "--lab-latency", default="realistic", help="lab latency: 0 | realistic | MS | MEDIAN,P99"
    )
    up.add_argument("--lab-faults", default="", help="lab faults, e.g. hang=0.02,busy=0.05")

    api = commands.add_parser("api", help="serve the REST API only (needs RACKSMITH_NATS_URL)")
    _add_common(api)
    _add_listen(api)

    artifacts = commands.add_parser(
        "artifacts",
        help="serve artifacts to BMCs (the BMC-facing download server; needs the database)",
        description="Serve granted firmware binaries and OS images over plain HTTP with Range "
        "support on RACKSMITH_ARTIFACT_HOST:RACKSMITH_ARTIFACT_PORT, the address BMCs reach as "
        "RACKSMITH_ARTIFACT_URL.",
    )
    _add_common(artifacts)
    _add_artifact_listen(artifacts)

    worker = commands.add_parser("worker", help="run one kind of worker (needs RACKSMITH_NATS_URL)")
    _add_common(worker)
    worker.add_argument("kind", choices=WORKER_KINDS)
    worker.add_argument("--health-port", type=int, help="probe port (default 8081)")

    migrate = commands.add_parser(
        "migrate",
        help="upgrade the database schema; declare NATS streams/consumers if NATS is configured",
    )
    _add_common(migrate)

    createsuperuser = commands.add_parser("createsuperuser", help="create a superuser account")
    _add_common(createsuperuser)
    createsuperuser.add_argument("--username", required=True)
    createsuperuser.add_argument("--email", default="")
    createsuperuser.add_argument(
        "--password",
        help="password (default: RACKSMITH_NEW_PASSWORD, else prompted)",
    )

    lab = commands.add_parser(
        "lab",
        help="serve a fleet of simulated Redfish BMCs on loopback (the BMC lab)",
        description="One process serving N simulated BMCs, BMC k on the k-th host address of "
        "--network, HTTPS with a per-lab CA. Prints the addresses and a JSON manifest.",
    )
    bmclab_cli.add_arguments(lab)

    openapi = commands.add_parser("openapi", help="print the OpenAPI schema")
    openapi.add_argument("--format", choices=("yaml", "json"), default="yaml")
    openapi.add_argument(
        "--openapi-version",
        choices=("3.0", "3.1"),
        default="3.0",
        help="OpenAPI 3.0.3 (what the guide promises, the default) or 3.1",
    )
    asyncapi = commands.add_parser(
        "asyncapi", help="print the AsyncAPI document of the events (docs/asyncapi.yaml)"
    )
    asyncapi.add_argument("--format", choices=("yaml", "json"), default="yaml")
    asyncapi.add_argument("--output", type=Path, help="write to this file instead of stdout")
    nats_users = commands.add_parser(
        "nats-users",
        help="print the NATS users and permissions a deployment's NATS server needs",
        description="Every component's user with its publish/subscribe permissions, passwords "
        "read from the server's environment (<USER>_PASSWORD): `conf` for a nats-server "
        "configuration file, `helm` for the official chart's values (deploy/k8s keeps both).",
    )
    nats_users.add_argument("--format", choices=("conf", "helm"), default="conf")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("state_dir", "state_dir"),
        ("host", "host"),
        ("port", "port"),
        ("nats_port", "nats_port"),
        ("health_port", "worker_health_port"),
        ("artifact_host", "artifact_host"),
        ("artifact_port", "artifact_port"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def _lab_config(args: argparse.Namespace) -> LabConfig | None:
    if not args.lab:
        return None
    return LabConfig(
        count=args.lab,
        network=args.lab_network,
        port=args.lab_port,
        latency=args.lab_latency,
        faults=args.lab_faults,
    )


def _print_openapi(fmt: str, version: str) -> None:
    from services.api.app import create_app
    from services.api.schema import openapi_document
    from shared.platform.runtime import Runtime

    # Building the schema needs no connection and must not create keys in a state dir.
    settings = Settings(
        secret_key=SecretStr("schema-only"),
        credential_key=SecretStr(Fernet.generate_key().decode()),
    )
    schema = openapi_document(create_app(Runtime(settings, "nats://127.0.0.1:0")), version)
    print(_render(schema, fmt), end="")


def _render(document: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _write_asyncapi(fmt: str, output: Path | None) -> None:
    from shared.contracts import asyncapi

    text = _render(asyncapi.document(), fmt)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)


async def _create_superuser(settings: Settings, args: argparse.Namespace) -> None:
    from shared.core.db import Database
    from shared.platform.bootstrap import create_user

    password = args.password or os.environ.get("RACKSMITH_NEW_PASSWORD")
    if not password:
        password = getpass.getpass("Password: ")
    db = Database(settings.effective_database_url)
    try:
        await create_user(db, args.username, password, email=args.email)
    finally:
        await db.dispose()
    print(f"Superuser {args.username!r} created.")


def _run(coro: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(coro)
    except StartupError as exc:
        print(f"racksmith: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "openapi":
        _print_openapi(args.format, args.openapi_version)
        return 0
    if args.command == "asyncapi":
        _write_asyncapi(args.format, args.output)
        return 0
    if args.command == "nats-users":
        from shared.messaging.permissions import server_config

        print(server_config(args.format), end="")
        return 0
    if args.command == "lab" and args.lab_command == "firmware-image":
        bmclab_cli.write_firmware_image(args)
        return 0
    if args.command == "lab":
        # SIGTERM cancels the lab's task, Ctrl-C interrupts: both are a normal stop.
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(bmclab_cli.serve(args))
        return 0
    settings = settings_from(args)
    configure_logging(settings)
    handlers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "up": lambda: run_up(settings, sys.stdout, lab=_lab_config(args)),
        "api": lambda: run_api(settings),
        "artifacts": lambda: run_artifacts(settings),
        "worker": lambda: run_worker(settings, [args.kind]),
        "migrate": lambda: run_migrate(settings),
        "createsuperuser": lambda: _create_superuser(settings, args),
    }
    return _run(handlers[args.command]())


if __name__ == "__main__":
    sys.exit(main())

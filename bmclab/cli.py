"""Command line: ``python -m bmclab`` or ``racksmith lab`` (which reuses these two hooks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from bmclab.fleet import Lab, LabConfig
from bmclab.updates import build_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tools = parser.add_subparsers(dest="lab_command", metavar="{firmware-image}")
    image = tools.add_parser(
        "firmware-image",
        help="write a firmware image the lab's BMCs accept",
        description="A firmware image for the lab's UpdateService: it names the manufacturer, "
        "the component (BIOS, BMC, or an inventory entry's name) and the version the BMC "
        "reports once the update takes effect.",
    )
    image.add_argument("--manufacturer", required=True, help='e.g. "Dell Inc.", HPE, Supermicro')
    image.add_argument("--component", required=True, help="BIOS, BMC, or an entry's name")
    image.add_argument("--version", required=True, help="the version it installs")
    image.add_argument("--size", type=int, default=65536, help="bytes (default 65536)")
    image.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    parser.add_argument("--count", type=int, default=5, help="number of synthetic BMCs")
    parser.add_argument(
        "--network",
        default="127.0.10.0/24",
        help="loopback network; BMC k listens on its k-th host address",
    )
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--flavours",
        default="dell,hpe,supermicro,openbmc",
        help="comma-separated flavours, assigned round-robin",
    )
    parser.add_argument("--username", default="root")
    parser.add_argument("--password", default="calvin")
    parser.add_argument(
        "--latency", default="realistic", help="0 | realistic | MS (fixed) | MEDIAN_MS,P99_MS"
    )
    parser.add_argument(
        "--faults", default="", help="e.g. hang=0.02,busy:30=0.05,tlsfail@3,drip@127.0.10.4"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--session-limit", type=int, default=8)
    parser.add_argument(
        "--session-timeout", type=float, default=1800.0, help="idle session expiry in seconds"
    )
    parser.add_argument(
        "--mockup",
        action="append",
        default=[],
        type=Path,
        help="serve a recorded Redfish mockup directory (repeatable)",
    )
    parser.add_argument(
        "--power-delay",
        type=float,
        default=2.0,
        help="seconds a host spends PoweringOn/PoweringOff (graceful shutdown: twice); 0 = instant",
    )
    parser.add_argument(
        "--power-on-holdoff",
        type=float,
        default=3.0,
        help="seconds after reaching Off during which Dell BMCs answer 409 to On",
    )
    parser.add_argument(
        "--install-time",
        type=float,
        default=5.0,
        help="seconds the fake OS installer runs before it calls home or powers off",
    )
    parser.add_argument("--manifest", type=Path, help="write the JSON manifest here")
    parser.add_argument("--state-dir", type=Path, help="keep the CA and certificates here")


def config_from_args(args: argparse.Namespace) -> LabConfig:
    return LabConfig(
        count=args.count,
        network=args.network,
        port=args.port,
        flavours=tuple(f.strip() for f in args.flavours.split(",") if f.strip()),
        username=args.username,
        password=args.password,
        latency=args.latency,
        faults=args.faults,
        seed=args.seed,
        session_limit=args.session_limit,
        session_timeout=args.session_timeout,
        power_delay=args.power_delay,
        power_on_holdoff=args.power_on_holdoff,
        install_time=args.install_time,
        mockups=tuple(args.mockup),
        state_dir=args.state_dir,
    )


async def run(args: argparse.Namespace) -> None:
    lab = Lab(config_from_args(args))
    await lab.start()
    try:
        for entry in lab.manifest:
            fault = f"  fault={entry.fault}" if entry.fault else ""
            print(f"{entry.url}  {entry.flavour:<28} {entry.serial or '-'}{fault}", flush=True)
        document = lab.manifest_json()
        if args.manifest is not None:
            args.manifest.write_text(document)
            print(f"manifest written to {args.manifest}", flush=True)
        else:
            print(document, flush=True)
        await asyncio.Event().wait()
    finally:
        await lab.stop()


def write_firmware_image(args: argparse.Namespace) -> None:
    data = build_image(args.manufacturer, args.component, args.version, args.size)
    args.output.write_bytes(data)
    print(
        f"{args.output}: {len(data)} bytes, {args.component} {args.version} for {args.manufacturer}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bmclab", description="Simulated Redfish BMC fleet")
    add_arguments(parser)
    args = parser.parse_args()
    if args.lab_command == "firmware-image":
        write_firmware_image(args)
        return
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(serve(args))


async def serve(args: argparse.Namespace) -> None:
    # SIGTERM cancels like Ctrl-C so the lab closes its sockets and temporary certificates.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run(args)

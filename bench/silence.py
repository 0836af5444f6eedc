"""Silent loopback addresses for the discovery benchmark: a TCP SYN to them gets no answer at all.

On loopback a port nobody listens on answers a SYN at once with a RST ("connection refused"); a
real data-centre network mostly does not answer at all (no host, or a firewall that drops), and a
scanner pays its connect timeout for every such address. To reproduce that without root-only
packet filters, each silent address gets a listening socket whose accept queue is full:

* ``listen(0)``: the kernel keeps at most one established connection waiting for ``accept()``;
* one "filler" connection is made to it and never accepted, so that queue is full;
* from then on Linux drops every further SYN to that address and port before answering it
  (``tcp_conn_request``: accept queue full → drop, counted as ``ListenOverflows``), exactly like a
  host behind a DROP rule: the client retransmits its SYN and eventually times out.

Raw-socket scanners (``nmap -sS``) see the same thing: their SYN is dropped, the port is
"filtered". Nothing is ever accepted, so nothing is ever read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class SilentListeners:
    """One listener with a full accept queue per address, all on ``port``. Use as a context."""

    def __init__(self, addresses: Iterable[str], port: int) -> None:
        self.addresses = list(addresses)
        self.port = port
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> SilentListeners:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            for address in self.addresses:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._sockets.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, self.port))
                listener.listen(0)
                # The filler: completes the handshake (the queue has room for exactly one) and
                # then waits forever, since nobody calls accept().
                filler = socket.create_connection((address, self.port), timeout=2.0)
                self._sockets.append(filler)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


@dataclass(frozen=True)
class ConnectOutcome:
    address: str
    outcome: str  # "accepted" | "refused" | "timeout" | "error: ..."
    seconds: float


async def try_connect(address: str, port: int, wait_s: float) -> ConnectOutcome:
    """What a plain TCP connect to ``address:port`` does within ``wait_s`` seconds."""
    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), wait_s)
    except TimeoutError:
        outcome = "timeout"
    except ConnectionRefusedError:
        outcome = "refused"
    except OSError as exc:
        outcome = f"error: {exc}"
    else:
        outcome = "accepted"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return ConnectOutcome(address, outcome, time.perf_counter() - started)


async def classify(addresses: Sequence[str], port: int, wait_s: float) -> list[ConnectOutcome]:
    """Connect to every address at once (bounded), in order."""
    limit = asyncio.Semaphore(1024)

    async def one(address: str) -> ConnectOutcome:
        async with limit:
            return await try_connect(address, port, wait_s)

    return list(await asyncio.gather(*(one(a) for a in addresses)))

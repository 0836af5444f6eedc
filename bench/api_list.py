"""Benchmark: API list endpoints against the bare SQL for the same page.

For every dataset (users, servers) the script builds a real platform in a temp dir — an embedded
nats-server, a migrated database seeded with N rows by bulk inserts, and ``racksmith api`` in a
subprocess (so the HTTP client never competes with the server for the GIL) — then, for each query
mix, times R sequential keep-alive HTTP requests and, interleaved with them in the same run, the
hand-written SQL a person would write for the same page (``COUNT`` + ``SELECT ... ORDER BY ...
LIMIT/OFFSET`` + the page's related rows) through the raw driver (aiosqlite / asyncpg). It prints
p50/p99 of both, their ratio, and whether the targets hold: p99 < 50 ms at page_size 50, and API
overhead <= 2x the bare SQL. This is a benchmark that prints figures, not a test: nothing here fails
on wall-clock time.

    python bench/api_list.py                                   # SQLite file in a temp dir
    python bench/api_list.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/

With PostgreSQL the URL only names the server (and the maintenance database to connect to first,
``postgres`` when the URL has none): the benchmark creates and uses its own database
``racksmith_bench`` (``--pg-database``), whose schema it drops and recreates.

``--users 0`` / ``--servers 0`` skips a dataset; ``--only TEXT`` runs only the mixes whose name
contains TEXT. Adding a dataset: write a seed function and a list of ``Mix``es and append a
``Dataset`` to ``DATASETS``; it gets its own ``--<name> N`` option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import random
import re
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import asyncpg
import httpx
from harness import empty_postgres_database, machine_description, platform_env, run_benchmark
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.core.db import Database, is_sqlite
from shared.core.security import hash_password
from shared.models import metadata
from shared.platform import migrate
from shared.platform.bootstrap import create_user
from shared.platform.natsserver import EmbeddedNatsServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0
TARGET_RATIO = 2.0
TARGET_PAGE_SIZE = 50
DEFAULT_PG_DATABASE = "racksmith_bench"
ADMIN_USERNAME = "bench-admin"
SEED_CHUNK = 5_000


# --- what a query mix is ------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlPage:
    """The hand-written SQL for one list request.

    ``where`` uses ``?`` placeholders and ``ILIKE`` (rendered per database); ``limit=None`` is the
    unpaginated list (no ``COUNT``: the API answers ``len(results)`` then). ``related`` fetches the
    page's related rows given its primary keys; its ``{ids}`` is filled in per database.
    """

    table: str
    columns: str
    order: str
    where: str = ""
    args: tuple[Any, ...] = ()
    limit: int | None = None
    offset: int = 0
    related: str | None = None
    # What ``COUNT`` runs over when it differs from ``table`` (a join only the ordering needs).
    count_table: str | None = None


@dataclass(frozen=True)
class Mix:
    name: str
    params: Mapping[str, str]
    sql: SqlPage
    # Requests for this mix; None = ``--requests``. The unpaginated list uses ``--full-requests``.
    requests: int | None = None

    @property
    def query_string(self) -> str:
        return urlencode(self.params)

    @property
    def page_size(self) -> int | None:
        return self.sql.limit


@dataclass(frozen=True)
class SeedResult:
    rows: int
    description: str


SeedFn = Callable[[AsyncEngine, int, random.Random], Awaitable[SeedResult]]


@dataclass(frozen=True)
class Dataset:
    """One list endpoint: its CLI size option, how to fill it, and the mixes to time on it."""

    name: str
    endpoint: str
    default_size: int
    seed: SeedFn
    # The mixes for a dataset of N rows (a deep page must exist at every size).
    mixes: Callable[[int], list[Mix]]
    # Check that the API page and the SQL page hold the same rows: maps a result to its key.
    key_of: Callable[[Mapping[str, Any]], Any] = field(default=lambda r: r["id"])
    # The same key from a SQL row (the first column by default).
    sql_key_of: Callable[[Sequence[Any]], Any] = field(default=lambda r: r[0])
    # The result field listing related keys, checked against ``SqlPage.related`` rows.
    related_key: str | None = None


# --- users ----------------------------------------------------------------------------------------

FIRST_NAMES = (  # noqa: SIM905
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert "
    "sybil trent victor walter yann zoe amir bea chen dmitri elif fatima goran hiro ines"
).split()
LAST_NAMES = (  # noqa: SIM905
    "smith jones brown taylor wilson davies evans thomas johnson roberts walker wright "
    "robinson thompson white hughes edwards green hall wood harris lewis martin jackson "
    "clarke clark turner hill scott cooper"
).split()
DOMAINS = ("example.com", "example.org", "corp.example.net", "dc1.example.io", "lab.example.de")
TEAMS = (  # noqa: SIM905
    "ops net storage dc1 dc2 dc3 firmware provisioning security audit support oncall hpc "
    "gpu edge lab"
).split()
USER_COLUMNS = "id, username, email, is_superuser, is_active, date_joined, last_login"
USER_GROUPS = "SELECT user_id, group_id FROM group_membership WHERE user_id {ids}"
USERS_SEARCH = "(username ILIKE ? ESCAPE '\\' OR email ILIKE ? ESCAPE '\\')"


def _user_row(i: int, rng: random.Random, now: datetime, password_hash: str) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    shape = rng.random()
    if shape < 0.3:  # service / automation accounts
        username = f"user-{i}"
        email = f"user-{i}@svc.{rng.choice(DOMAINS)}"
    elif shape < 0.7:
        username = f"{first}.{last}{i}"
        email = f"{first}.{last}{i}@{rng.choice(DOMAINS)}"
    else:
        username = f"{first[0]}{last}{i}"
        email = f"{first.title()}.{last.title()}{i}@{rng.choice(DOMAINS).upper()}"
    if rng.random() < 0.05:
        email = ""
    joined = now - timedelta(seconds=rng.uniform(0, 5 * 365 * 86400))
    last_login = None if rng.random() < 0.2 else joined + (now - joined) * rng.random()
    return {
        "username": username,
        "email": email,
        "is_superuser": rng.random() < 0.01,
        "is_active": rng.random() < 0.9,
        "password_hash": password_hash,
        "date_joined": joined,
        "last_login": last_login,
    }


async def seed_users(engine: AsyncEngine, n: int, rng: random.Random) -> SeedResult:
    """N users (a few fixed password hashes: no argon2 per row), 48 groups, 0-3 groups each."""
    users, groups, membership = (
        metadata.tables["user"],
        metadata.tables["group"],
        metadata.tables["group_membership"],
    )
    hashes = [hash_password(secrets.token_urlsafe(12)) for _ in range(3)]
    now = datetime.now(UTC)
    group_names = [f"{team}-{k}" for team in TEAMS for k in ("admins", "operators", "viewers")]
    async with engine.begin() as conn:
        await conn.execute(groups.insert(), [{"name": name} for name in group_names])
        for start in range(0, n, SEED_CHUNK):
            rows = [
                _user_row(i, rng, now, hashes[i % len(hashes)])
                for i in range(start, min(n, start + SEED_CHUNK))
            ]
            await conn.execute(users.insert(), rows)
        group_ids = list((await conn.execute(text('SELECT id FROM "group"'))).scalars())
        user_ids = list(
            (
                await conn.execute(
                    text('SELECT id FROM "user" WHERE username <> :admin'),
                    {"admin": ADMIN_USERNAME},
                )
            ).scalars()
        )
        links: list[dict[str, int]] = []
        for user_id in user_ids:
            how_many = rng.choices((0, 1, 2, 3), weights=(30, 40, 20, 10))[0]
            links += [{"user_id": user_id, "group_id": g} for g in rng.sample(group_ids, how_many)]
        for start in range(0, len(links), SEED_CHUNK):
            await conn.execute(membership.insert(), links[start : start + SEED_CHUNK])
    return SeedResult(n, f"{n} users, {len(group_ids)} groups, {len(links)} memberships")


def user_mixes(n: int) -> list[Mix]:
    # Page 500 of 50 (rows 24,951-25,000) at the default size; the middle page when smaller.
    deep = max(1, min(500, n // TARGET_PAGE_SIZE // 2))

    def page(order: str, where: str = "", args: tuple[Any, ...] = (), **kw: Any) -> SqlPage:
        return SqlPage(
            table='"user"',
            columns=USER_COLUMNS,
            order=order,
            where=where,
            args=args,
            related=USER_GROUPS,
            **kw,
        )

    return [
        Mix("page 1", {"page": "1", "page_size": "50"}, page("id", limit=50)),
        Mix(
            "search",
            {"search": "user-12", "page_size": "50"},
            page("id", USERS_SEARCH, ("%user-12%",) * 2, limit=50),
        ),
        Mix(
            "filter+order",
            {"is_active": "true", "ordering": "-username", "page_size": "50"},
            # username is unique: no tie-breaker needed.
            page("username DESC", "is_active = ?", (True,), limit=50),
        ),
        Mix(
            "search+filter+order",
            {
                "search": "smith",
                "is_active": "false",
                "ordering": "-date_joined",
                "page_size": "50",
            },
            # The cheap equality first: SQLite evaluates AND terms in the order written.
            page(
                "date_joined DESC, id",
                f"is_active = ? AND {USERS_SEARCH}",
                (False, "%smith%", "%smith%"),
                limit=50,
            ),
        ),
        Mix(
            "deep page",
            {"ordering": "email", "page": str(deep), "page_size": "50"},
            page("email, id", limit=50, offset=(deep - 1) * 50),
        ),
        Mix("page_size 1000", {"page_size": "1000"}, page("id", limit=1000)),
        Mix("full list", {}, page("id")),
    ]


# --- servers --------------------------------------------------------------------------------------

# (manufacturer, model, weight): the guide's fleet, as the BMC lab's flavours report it.
SERVER_MODELS = (
    ("Dell Inc.", "PowerEdge R650", 22),
    ("Dell Inc.", "PowerEdge R750", 18),
    ("HPE", "ProLiant DL360 Gen10 Plus", 16),
    ("HPE", "ProLiant DL380 Gen10 Plus", 14),
    ("Supermicro", "SYS-120U-TNR", 10),
    ("Supermicro", "SYS-620U-TNR", 8),
    ("Wiwynn", "SV7220G3", 7),
    ("Wiwynn", "Yosemite V3", 5),
)
SITES = ("ams1", "fra2", "iad3", "sjc4")
POOL_NAMES = (  # noqa: SIM905
    "prod-web prod-db prod-cache prod-batch staging-web staging-db ci-runners hpc-a hpc-b "
    "gpu-train gpu-infer storage-ceph storage-backup edge-pops lab-firmware lab-qa "
    "spare-pool quarantine tenant-acme tenant-globex"
).split()
SERVER_COLUMNS = (
    "server.id, server.uuid, server.node_id, server.resource_pool_id, server.name, "
    "server.hostname, server.model, server.manufacturer, server.serial_number, server.sku, "
    "server.bios_version, server.power_state, server.health, server.bmc_url, "
    "server.description, server.location, server.inventory_status, server.inventory_error, "
    "server.last_inventory_at, server.created_at, server.updated_at"
)
SERVER_SEARCH_COLUMNS = ("name", "model", "serial_number", "manufacturer", "sku", "bmc_url")
SERVERS_SEARCH = (
    "(" + " OR ".join(f"server.{c} ILIKE ? ESCAPE '\\'" for c in SERVER_SEARCH_COLUMNS) + ")"
)
_ALNUM = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _code(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


def _vendor_facts(manufacturer: str, i: int, rng: random.Random) -> tuple[str, str, str]:
    """(serial number, SKU, BIOS version) shaped like each vendor's."""
    if manufacturer == "Dell Inc.":  # serial = board PPID-like, SKU = service tag
        return (
            f"CN{rng.randint(1000, 9999)}{_code(rng, 4)}{i:06d}",
            f"{_code(rng, 3)}{i % 10_000:04d}",
            rng.choice(("1.10.2", "1.11.2", "1.12.1", "1.13.2", "2.1.5")),
        )
    if manufacturer == "HPE":
        return (
            f"CZJ{i:07d}",
            rng.choice(("P28948-B21", "P39121-B21", "P19766-B21", "P55246-B21")),
            f"U46 v{rng.choice(('2.68', '2.72', '2.80'))} ({rng.choice(('03/08/2024', '11/14/2024'))})",  # noqa: E501
        )
    if manufacturer == "Supermicro":
        return (
            f"S{rng.randint(100, 999)}{i:07d}",
            rng.choice(("To Be Filled By O.E.M.", "Default string")),
            rng.choice(("1.4a", "1.5", "2.0b")),
        )
    return (  # Wiwynn / OpenBMC
        f"WYN{i:08d}",
        rng.choice(("SV7220G3-A1", "YV3-1S-02")),
        rng.choice(("F0E_3A17", "F0E_3A19", "F0T_3B05")),
    )


def _name(position: int) -> str:
    site = SITES[position % len(SITES)]
    rack, unit = divmod(position // len(SITES), 40)
    return f"{site}-r{rack:04d}-u{unit + 1:02d}"


# The server at rack position 0 (every dataset has one).
FIRST_HOSTNAME = f"{_name(0)}.{SITES[0]}.example.net"


def _server_row(
    i: int, position: int, rng: random.Random, now: datetime, pool_ids: list[int]
) -> dict[str, Any]:
    manufacturer, model = rng.choices(
        [(m, n) for m, n, _ in SERVER_MODELS], weights=[w for _, _, w in SERVER_MODELS]
    )[0]
    serial, sku, bios = _vendor_facts(manufacturer, i, rng)
    site = SITES[position % len(SITES)]
    rack, unit = divmod(position // len(SITES), 40)
    name = _name(position)
    collected = rng.random() < 0.97
    last = now - timedelta(seconds=rng.uniform(0, 6 * 3600)) if collected else None
    created = now - timedelta(seconds=rng.uniform(86400, 3 * 365 * 86400))
    return {
        "node_id": None,  # the bench needs no discovery rows; registration would link them
        "system_path": "/redfish/v1/Systems/"
        + {"Dell Inc.": "System.Embedded.1", "HPE": "1", "Wiwynn": "system"}.get(manufacturer, "1"),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "name": name,
        "hostname": f"{name}.{site}.example.net",
        "model": model,
        "manufacturer": manufacturer,
        "serial_number": serial,
        "sku": sku,
        "bios_version": bios,
        "power_state": "On" if rng.random() < 0.85 else "Off",
        "health": rng.choices(("OK", "Warning", "Critical"), weights=(92, 6, 2))[0],
        "bmc_url": f"https://10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        "resource_pool_id": rng.choice(pool_ids) if rng.random() < 0.9 else None,
        "description": "",
        "location": f"{site} rack {rack} U{unit + 1}",
        "inventory_status": "collected" if collected else "error",
        "inventory_error": None if collected else "BMC unreachable: connect timed out",
        "last_inventory_at": last,
        "inventory_hashes": {},
        "created_at": created,
        "updated_at": last or created,
        "version": 1,
    }


async def seed_servers(engine: AsyncEngine, n: int, rng: random.Random) -> SeedResult:
    """N servers (ids in random order of name), 20 pools (pool 1 included), 90% in a pool."""
    servers, pools = metadata.tables["server"], metadata.tables["pool"]
    now = datetime.now(UTC)
    # Rack positions shuffled against ids, so ordering by name is not ordering by id.
    positions = list(range(n))
    rng.shuffle(positions)
    async with engine.begin() as conn:
        await conn.execute(
            pools.insert(),
            [
                {"name": name, "description": "", "created_at": now, "updated_at": now}
                for name in POOL_NAMES
            ],
        )
        pool_ids = sorted((await conn.execute(text("SELECT id FROM pool"))).scalars())
        for start in range(0, n, SEED_CHUNK):
            rows = [
                _server_row(i, positions[i], rng, now, pool_ids)
                for i in range(start, min(n, start + SEED_CHUNK))
            ]
            await conn.execute(servers.insert(), rows)
    return SeedResult(n, f"{n} servers, {len(pool_ids)} pools (ids {pool_ids[0]}…{pool_ids[-1]})")


def server_mixes(n: int) -> list[Mix]:
    del n

    def page(order: str, where: str = "", args: tuple[Any, ...] = (), **kw: Any) -> SqlPage:
        return SqlPage(
            table="server", columns=SERVER_COLUMNS, order=order, where=where, args=args, **kw
        )

    def search(term: str) -> tuple[str, tuple[str, ...]]:
        return SERVERS_SEARCH, (f"%{term}%",) * len(SERVER_SEARCH_COLUMNS)

    return [
        Mix("page 1", {"page_size": "50"}, page("server.id", limit=50)),
        Mix(
            "search PowerEdge",
            {"search": "PowerEdge", "page_size": "50"},
            page("server.id", *search("PowerEdge"), limit=50),
        ),
        Mix(
            "search serial",  # a selective term: what the trigram indexes are for
            {"search": "CZJ00123", "page_size": "50"},
            page("server.id", *search("CZJ00123"), limit=50),
        ),
        Mix(
            "pool+On by name",
            {"resource_pool": "1", "power_state": "On", "ordering": "name", "page_size": "50"},
            page(
                "server.name, server.id",
                "server.resource_pool_id = ? AND server.power_state = ?",
                (1, "On"),
                limit=50,
            ),
        ),
        Mix(
            # Every scalar field is a filter; the host name is the one scripts look servers up by.
            "filter hostname",
            {"hostname": FIRST_HOSTNAME, "page_size": "50"},
            page("server.id", "server.hostname = ?", (FIRST_HOSTNAME,), limit=50),
        ),
        Mix(
            "by pool name",
            {"ordering": "resource_pool__name", "page_size": "50"},
            SqlPage(
                table="server LEFT OUTER JOIN pool ON pool.id = server.resource_pool_id",
                columns=SERVER_COLUMNS,
                order="pool.name, server.id",
                limit=50,
                count_table="server",
            ),
        ),
        Mix(
            "guide walkthrough",
            {"search": "PowerEdge", "ordering": "-id", "page_size": "10"},
            page("server.id DESC", *search("PowerEdge"), limit=10),
        ),
        Mix("page_size 1000", {"page_size": "1000"}, page("server.id", limit=1000)),
        Mix("full list", {}, page("server.id")),
    ]


DATASETS: list[Dataset] = [
    Dataset(
        name="users",
        endpoint="/api/users/",
        default_size=100_000,
        seed=seed_users,
        mixes=user_mixes,
        related_key="groups",
    ),
    Dataset(
        name="servers",
        endpoint="/api/server/",
        default_size=100_000,
        seed=seed_servers,
        mixes=server_mixes,
    ),
]


# --- bare SQL through the raw driver ------------------------------------------------------------


class Driver(Protocol):
    kind: str

    def render(self, sql: str) -> str: ...
    def ids_in(self) -> str: ...
    def ids_arg(self, ids: Sequence[Any]) -> Any: ...
    async def fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]: ...
    async def version(self) -> str: ...
    async def close(self) -> None: ...


class SqliteDriver:
    kind = "SQLite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def connect(cls, path: str) -> SqliteDriver:
        import aiosqlite

        return cls(await aiosqlite.connect(path))

    def render(self, sql: str) -> str:
        # SQLite's LIKE is already case-insensitive (ASCII), as the API's lower() LIKE lower().
        return sql.replace(" ILIKE ", " LIKE ")

    def ids_in(self) -> str:
        return "IN (SELECT value FROM json_each(?))"

    def ids_arg(self, ids: Sequence[Any]) -> Any:
        return json.dumps(list(ids))

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        async with self._conn.execute(sql, tuple(args)) as cursor:
            rows: list[Sequence[Any]] = await cursor.fetchall()
            return rows

    async def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (aiosqlite)"

    async def close(self) -> None:
        await self._conn.close()


class PostgresDriver:
    kind = "PostgreSQL"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> PostgresDriver:
        return cls(await asyncpg.connect(dsn))

    def render(self, sql: str) -> str:
        counter = iter(range(1, 1_000))
        return re.sub(r"\?", lambda _: f"${next(counter)}", sql)

    def ids_in(self) -> str:
        return "= ANY(?)"

    def ids_arg(self, ids: Sequence[Any]) -> Any:
        return list(ids)

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = await self._conn.fetch(sql, *args)
        return rows

    async def version(self) -> str:
        return f"PostgreSQL {await self._conn.fetchval('SHOW server_version')} (asyncpg)"

    async def close(self) -> None:
        await self._conn.close()


@dataclass(frozen=True)
class SqlResult:
    count: int
    rows: list[Sequence[Any]]
    related: list[Sequence[Any]]


async def run_sql(driver: Driver, page: SqlPage) -> SqlResult:
    """What the endpoint needs from the database: the count, the page, the page's related rows."""
    where = f" WHERE {page.where}" if page.where else ""
    # Built from the constants of a Mix, never from outside input.
    select = f"SELECT {page.columns} FROM {page.table}{where} ORDER BY {page.order}"  # noqa: S608
    if page.limit is not None:
        select += f" LIMIT {page.limit} OFFSET {page.offset}"
        count_rows = await driver.fetch(
            driver.render(f"SELECT count(*) FROM {page.count_table or page.table}{where}"),  # noqa: S608
            page.args,
        )
        count = int(count_rows[0][0])
    rows = await driver.fetch(driver.render(select), page.args)
    if page.limit is None:
        count = len(rows)
    related: list[Sequence[Any]] = []
    if page.related is not None and rows:
        sql = driver.render(page.related.format(ids=driver.ids_in()))
        related = await driver.fetch(sql, (driver.ids_arg([r[0] for r in rows]),))
    return SqlResult(count, rows, related)


# --- the platform under test --------------------------------------------------------------------


@dataclass
class Target:
    """Where the benchmark's database lives and how each side reaches it."""

    app_url: str  # SQLAlchemy URL for the API and the seeding engine
    connect_driver: Callable[[], Awaitable[Driver]]
    description: str


async def prepare_sqlite(url: str | None, tmp: Path) -> Target:
    if url is None:
        path = tmp / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        database = make_url(url).database
        if not database or database == ":memory:":
            raise SystemExit("api_list: an in-memory SQLite database cannot be shared with the API")
        path = Path(database)
        if path.exists() and path.stat().st_size > 0:
            raise SystemExit(
                f"api_list: {path} exists; give a new file (it is filled from scratch)"
            )

    async def connect() -> Driver:
        return await SqliteDriver.connect(str(path))

    return Target(url, connect, f"SQLite file {path}")


async def prepare_postgres(url: str, bench_db: str) -> Target:
    """Create ``bench_db`` on the URL's server if needed and empty its public schema."""
    pg = await empty_postgres_database(url, bench_db)

    async def connect() -> Driver:
        return await PostgresDriver.connect(pg.dsn)

    return Target(pg.app_url, connect, f"PostgreSQL database {bench_db} on {pg.where}")


async def after_seed(target: Target) -> None:
    """PostgreSQL: the state autovacuum reaches on its own (statistics, visibility map)."""
    if is_sqlite(target.app_url):
        return  # Racksmith never runs ANALYZE on its SQLite file; neither do we.
    conn = await asyncpg.connect(
        make_url(target.app_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


class ApiProcess:
    """``racksmith api`` in a subprocess of its own session; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path, profile: Path | None):
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._env = env
        self._log_path = log_path
        self._profile = profile
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        command = [sys.executable]
        if self._profile is not None:
            command += ["-m", "cProfile", "-o", str(self._profile)]
        command += ["-m", "services.cli", "api", "--host", "127.0.0.1", "--port", str(self.port)]
        with self._log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                env=self._env,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    raise RuntimeError(f"racksmith api exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"racksmith api not ready in time:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


# --- measuring ----------------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples = the 2nd slowest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class MixResult:
    dataset: str
    mix: Mix
    http_ms: list[float]
    sql_ms: list[float]
    count: int
    checked: str  # "same page" or what differed

    def p(self, which: str, q: float) -> float:
        return percentile(self.http_ms if which == "http" else self.sql_ms, q)


def compare(dataset: Dataset, body: Mapping[str, Any], sql: SqlResult) -> str:
    """Whether the API's page and the hand-written SQL's page are the same rows (else: why not)."""
    if body.get("count") != sql.count:
        return f"count differs: API {body.get('count')} vs SQL {sql.count}"
    api_keys = [dataset.key_of(r) for r in body["results"]]
    sql_keys = [dataset.sql_key_of(r) for r in sql.rows]
    if api_keys != sql_keys:
        return f"rows differ (API {api_keys[:3]}… vs SQL {sql_keys[:3]}…)"
    if dataset.related_key is not None:
        api_related = sorted(
            (dataset.key_of(r), g) for r in body["results"] for g in r[dataset.related_key]
        )
        if api_related != sorted((r[0], r[1]) for r in sql.related):
            return "related rows differ"
    return "same page"


async def measure(
    dataset: Dataset,
    mix: Mix,
    client: httpx.AsyncClient,
    driver: Driver,
    requests: int,
    warmup: int,
) -> MixResult:
    async def http_once() -> httpx.Response:
        response = await client.get(dataset.endpoint, params=dict(mix.params))
        if response.status_code != 200:
            raise RuntimeError(
                f"{dataset.endpoint}?{mix.query_string} → {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    for _ in range(warmup):
        await http_once()
        await run_sql(driver, mix.sql)
    # Equivalence check outside the timed loop: the two sides must produce the same page.
    body = (await http_once()).json()
    checked = compare(dataset, body, await run_sql(driver, mix.sql))
    http_ms: list[float] = []
    sql_ms: list[float] = []
    # Interleaved, so both sides see the same caches, background load and thermal state.
    with client_gc_paused():
        for _ in range(requests):
            started = time.perf_counter()
            await http_once()
            http_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await run_sql(driver, mix.sql)
            sql_ms.append((time.perf_counter() - started) * 1000)
    return MixResult(dataset.name, mix, http_ms, sql_ms, int(body["count"]), checked)


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """No collector pauses in *this* process while timing (the server's GC still counts)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def measure_floor(client: httpx.AsyncClient, path: str, requests: int) -> list[float]:
    """The cost of a request that does no list work: the floor under every mix."""
    for _ in range(3):
        (await client.get(path)).raise_for_status()
    samples: list[float] = []
    with client_gc_paused():
        for _ in range(requests):
            started = time.perf_counter()
            response = await client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return samples


# --- reporting ----------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(results: list[MixResult], floors: list[tuple[str, list[float]]]) -> bool:
    """Print the table; True when every page_size-50 mix meets both targets."""
    print()
    print("Fixed cost of one request (no list work):")
    for path, samples in floors:
        print(
            f"  GET {path:<16} p50 {_ms(percentile(samples, 50)):>6} ms   "
            f"p99 {_ms(percentile(samples, 99)):>6} ms   ({len(samples)} requests)"
        )
    print()
    header = (
        f"{'dataset':<8} {'mix':<20} {'n':>4} {'matches':>7} {'HTTP p50':>9} {'HTTP p99':>9} "
        f"{'SQL p50':>8} {'SQL p99':>8} {'xp50':>6} {'xp99':>6} "
        f"{'p99<50ms':>8} {'<=2xSQL':>7}"
    )
    print(header)
    print("-" * len(header))
    all_ok = True
    for r in results:
        http50, http99 = r.p("http", 50), r.p("http", 99)
        sql50, sql99 = r.p("sql", 50), r.p("sql", 99)
        ratio50, ratio99 = http50 / sql50, http99 / sql99
        in_scope = r.mix.page_size == TARGET_PAGE_SIZE
        latency_ok = http99 < TARGET_P99_MS
        ratio_ok = ratio50 <= TARGET_RATIO
        if in_scope:
            all_ok = all_ok and latency_ok and ratio_ok
        print(
            f"{r.dataset:<8} {r.mix.name:<20} {len(r.http_ms):>4} {r.count:>7} "
            f"{_ms(http50):>6} ms {_ms(http99):>6} ms {_ms(sql50):>5} ms {_ms(sql99):>5} ms "
            f"{ratio50:>5.1f}x {ratio99:>5.1f}x "
            f"{_verdict(latency_ok) if in_scope else 'n/a':>8} "
            f"{_verdict(ratio_ok) if in_scope else f'({_verdict(ratio_ok)})':>7}"
        )
    print()
    print("Mixes (HTTP request | hand-written SQL; check of the API page against the SQL page):")
    for r in results:
        print(f"  {r.mix.name}: GET {r.mix.query_string or '(no parameters)'}  [{r.checked}]")
        sql = r.mix.sql
        where = f" WHERE {sql.where}" if sql.where else ""
        limit = f" LIMIT {sql.limit} OFFSET {sql.offset}" if sql.limit is not None else ""
        print(f"      SELECT … FROM {sql.table}{where} ORDER BY {sql.order}{limit}")  # noqa: S608
    print()
    print(
        f"Targets: p99 < {TARGET_P99_MS:.0f} ms at page_size {TARGET_PAGE_SIZE}; "
        f"API overhead <= {TARGET_RATIO:.0f}x the bare SQL (judged on p50; p99 ratio shown). "
        "Other page sizes: ratio in parentheses, for information."
    )
    print("Targets at page_size 50: " + ("all met." if all_ok else "MISSED for at least one mix."))
    return all_ok


# --- orchestration ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time API list requests against the bare SQL for the same page.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for dataset in DATASETS:
        parser.add_argument(
            f"--{dataset.name}",
            type=int,
            default=dataset.default_size,
            metavar="N",
            help=f"rows to seed for {dataset.endpoint} (0 skips this dataset)",
        )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy async URL; default: a fresh SQLite file in a temp dir. For PostgreSQL "
        "it names the server: the benchmark uses its own database (--pg-database)",
    )
    parser.add_argument(
        "--pg-database",
        default=DEFAULT_PG_DATABASE,
        help="PostgreSQL database created (if missing) and emptied for the benchmark",
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests per mix")
    parser.add_argument(
        "--full-requests", type=int, default=5, help="timed requests for unpaginated mixes"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per mix first")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the generated data")
    parser.add_argument("--only", help="run only mixes whose name contains this text")
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="FILE",
        help="run the API under cProfile and write its stats to FILE (inflates the figures)",
    )
    return parser.parse_args(argv)


def _step(message: str) -> float:
    print(message, end="", flush=True)
    return time.perf_counter()


def _done(started: float) -> None:
    print(f" {time.perf_counter() - started:.1f} s", flush=True)


async def run(args: argparse.Namespace) -> bool:
    # SIGTERM like Ctrl-C: cancel, so every cleanup below runs (API, nats-server, temp dir).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    datasets = [d for d in DATASETS if getattr(args, d.name) > 0]
    if not datasets:
        raise SystemExit("api_list: nothing to do (every dataset size is 0)")
    async with AsyncExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="racksmith-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        url = args.database_url
        if url is None or is_sqlite(url):
            target = await prepare_sqlite(url, tmp)
        elif url.startswith("postgresql"):
            target = await prepare_postgres(url, args.pg_database)
        else:
            raise SystemExit(f"api_list: unsupported database URL {url!r}")

        nats = EmbeddedNatsServer(tmp / "nats")
        started = _step("Starting nats-server…")
        await nats.start()
        stack.push_async_callback(nats.stop)
        _done(started)

        db = Database(target.app_url)
        stack.push_async_callback(db.dispose)
        started = _step("Migrating…")
        await migrate.upgrade(db.engine)
        _done(started)
        admin_password = secrets.token_urlsafe(16)
        await create_user(db, ADMIN_USERNAME, admin_password, superuser=True)
        rng = random.Random(args.seed)
        for dataset in datasets:
            size = getattr(args, dataset.name)
            started = _step(f"Seeding {dataset.name}…")
            seeded = await dataset.seed(db.engine, size, rng)
            _done(started)
            print(f"  {seeded.description}", flush=True)
        await after_seed(target)
        await db.dispose()

        env = platform_env(tmp, target.app_url, nats.client_url(), RACKSMITH_LOG_FORMAT="console")
        api = ApiProcess(env, free_port(), tmp / "api.log", args.profile_server)
        started = _step("Starting racksmith api…")
        stack.push_async_callback(api.stop)
        await api.start()
        _done(started)
        print(f"  pid {api.pid} on {api.base_url} (attach py-spy here), log {tmp / 'api.log'}")

        driver = await target.connect_driver()
        stack.push_async_callback(driver.close)
        database = await driver.version()

        print()
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")
        print(f"{'where':<13} {target.description}")
        print(flush=True)

        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api.base_url, timeout=httpx.Timeout(600))
        )
        token = await client.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": admin_password}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"

        floors = [
            (path, await measure_floor(client, path, args.requests))
            for path in ("/healthz", "/api/users/me/")
        ]
        results: list[MixResult] = []
        for dataset in datasets:
            for mix in dataset.mixes(getattr(args, dataset.name)):
                if args.only and args.only not in mix.name:
                    continue
                unpaginated = mix.sql.limit is None
                requests = mix.requests or (args.full_requests if unpaginated else args.requests)
                warmup = 1 if unpaginated else args.warmup
                started = _step(f"  {dataset.name}: {mix.name} ({requests} requests)…")
                results.append(await measure(dataset, mix, client, driver, requests, warmup))
                _done(started)
        return report(results, floors)
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(run(args))


if __name__ == "__main__":
    sys.exit(main())

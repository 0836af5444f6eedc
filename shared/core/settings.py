"""The one settings object.

Every field can be set from the environment as ``RACKSMITH_<FIELD>`` (upper case); the CLI
flags only override a few of them. Defaults describe the embedded single-process install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RACKSMITH_", extra="ignore")

    state_dir: Path = Field(
        Path(".racksmith"),
        description="Directory for the embedded database, NATS data and generated keys.",
    )
    mode: Literal["embedded", "production"] = Field(
        "embedded",
        description="`production`: secrets (JWT signing key, credential key) must be "
        "configured; nothing is generated into the state dir.",
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    public_url: str | None = Field(
        None,
        description="Base URL clients use (behind a proxy); absolute pagination links use it "
        "instead of the request's own URL.",
    )

    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Unset: SQLite file `racksmith.db` in the state dir.",
    )
    database_echo: bool = Field(False, description="Log every SQL statement.")

    nats_url: str | None = Field(
        None,
        description="External NATS server. Unset: `racksmith up` starts its own nats-server.",
    )
    nats_port: int = Field(
        0, ge=0, le=65535, description="Port for the embedded nats-server; 0 picks a free one."
    )
    events_max_age_days: float = Field(7.0, gt=0, description="Retention of RACKSMITH_EVENTS.")
    events_max_bytes: int = Field(
        8 * 1024**3,
        gt=0,
        description="Size cap of RACKSMITH_EVENTS; beyond it the oldest events are discarded.",
    )
    sse_heartbeat_s: float = Field(
        15.0,
        gt=0,
        description="An idle `/api/events/stream/` sends a heartbeat comment this often (so "
        "proxies keep it open) and re-reads the user's visible pools at least this often.",
    )

    secret_key: SecretStr | None = Field(
        None,
        description="JWT signing key. Unset in embedded mode: generated into the state dir.",
    )
    credential_key: SecretStr | None = Field(
        None,
        description="Fernet key encrypting stored BMC passwords and webhook secrets. Unset in "
        "embedded mode: generated into the state dir; required in production mode.",
    )
    access_token_lifetime_s: int = Field(24 * 3600, gt=0, description="Access token lifetime.")
    refresh_token_lifetime_s: int = Field(7 * 24 * 3600, gt=0, description="Refresh lifetime.")
    token_rate_limit: str = Field(
        "20/minute",
        description="Attempts per client address on /api/token/ (limits syntax, e.g. 20/minute).",
    )

    admin_username: str = Field("admin", description="Superuser created on first start.")
    admin_password: SecretStr | None = Field(
        None, description="Its password. Unset: generated and printed once."
    )

    log_level: str = Field("INFO", description="Root log level.")
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="`auto`: console on a terminal, JSON otherwise."
    )

    worker_health_port: int = Field(
        8081, ge=0, le=65535, description="Port of a standalone worker's /healthz and /readyz."
    )
    shutdown_timeout_s: float = Field(
        20.0, gt=0, description="Grace period for in-flight work on SIGTERM/Ctrl-C."
    )
    command_ack_wait_s: float = Field(
        60.0, gt=0, description="Seconds before an unacknowledged command is redelivered."
    )
    command_max_deliver: int = Field(
        5, ge=1, description="Deliveries of a command before its target is marked `error`."
    )

    scan_max_addresses: int = Field(
        65_536, ge=1, description="Largest scan range accepted, in addresses."
    )
    scan_allowed_networks: str = Field(
        "",
        description="Comma-separated CIDRs scan ranges must lie in (e.g. `10.0.0.0/8`); "
        "empty: any.",
    )
    scan_chunk_size: int = Field(
        256, ge=1, le=65_536, description="Addresses per scan chunk (the unit a replica takes)."
    )
    scan_concurrency: int = Field(
        2048, ge=1, description="Probes in flight per scanner process (over all its chunks)."
    )
    scan_connect_timeout_s: float = Field(
        1.0, gt=0, description="TCP connect timeout per probe; silent addresses cost this."
    )
    scan_probe_timeout_s: float = Field(
        20.0,
        gt=0,
        description="TLS handshake plus `GET /redfish/v1/` timeout per responder (real BMCs "
        "take up to ~20 s on one call; only addresses that accept a connection pay it).",
    )
    scan_progress_interval_s: float = Field(
        2.0, gt=0, description="Minimum seconds between progress updates of a chunk."
    )

    register_wait_s: float = Field(
        30.0,
        ge=0,
        description="How long `register/` waits for the outcome before answering 202 "
        "(`?wait=` overrides per request; 0 answers at once).",
    )
    bmc_max_deliver: int = Field(
        20,
        ge=1,
        description="Attempts at BMC work (registration, inventory) while the BMC answers busy "
        "(503) before the target is marked `error`; with back-off up to a minute this is "
        "~15 minutes of patience.",
    )
    bmc_unreachable_attempts: int = Field(
        3, ge=1, description="Attempts while a BMC times out or refuses before `error`."
    )
    inventory_interval_s: float = Field(
        6 * 3600.0,
        ge=0,
        description="Re-collect every server's inventory this often (spread evenly); 0: never.",
    )
    inventory_tick_s: float = Field(
        30.0, gt=0, description="How often the inventory scheduler looks for due servers."
    )
    job_poll_interval_s: float = Field(
        2.0,
        gt=0,
        description="How often a waiting job reads its BMC (PowerState, boot settings, tasks).",
    )
    job_power_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Step deadline of a power transition: the BMC must accept the reset and "
        "PowerState must read back as expected within this time.",
    )
    job_graceful_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Step deadline of a graceful shutdown (the operating system's own "
        "shutdown); a request's `timeout` overrides it.",
    )
    job_deadline_s: float = Field(
        3600.0,
        gt=0,
        description="Deadline of a power or boot job, from its creation: past it the job fails "
        "with `deadline_exceeded`.",
    )
    job_tick_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest one step of a job may take (its BMC calls included); also how long "
        "a job stays claimed by a worker that died mid-step.",
    )
    watchdog_interval_s: float = Field(
        30.0, gt=0, description="How often the watchdog looks for work past its deadline."
    )
    scan_deadline_s: float = Field(
        3600.0,
        gt=0,
        description="A scan range still `scanning` this long after its run started is failed by "
        "the watchdog.",
    )
    register_deadline_s: float = Field(
        1800.0,
        gt=0,
        description="A node still `registering` this long after the request is failed by the "
        "watchdog.",
    )
    redfish_per_bmc: int = Field(4, ge=1, le=16, description="Requests in flight per BMC.")
    redfish_total: int = Field(256, ge=1, description="Requests in flight per process.")
    redfish_connect_timeout_s: float = Field(5.0, gt=0, description="BMC connect timeout.")
    redfish_read_timeout_s: float = Field(30.0, gt=0, description="BMC read timeout.")

    webhook_allowed_networks: str = Field(
        "",
        description="Comma-separated CIDRs webhook URLs must resolve into (e.g. `10.20.0.0/16`); "
        "empty: any address except loopback, link-local, multicast and reserved ones.",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of one webhook delivery attempt (connect to last byte)."
    )
    webhook_max_attempts: int = Field(
        15, ge=1, description="Attempts at one delivery before it is marked `failed`."
    )
    webhook_retry_base_s: float = Field(
        5.0, gt=0, description="Back-off before the 2nd attempt; doubles per attempt (full jitter)."
    )
    webhook_retry_max_s: float = Field(
        3600.0, gt=0, description="Longest back-off between attempts (also caps `Retry-After`)."
    )
    webhook_disable_after_failures: int = Field(
        20,
        ge=1,
        description="Consecutive failed attempts that, lasting at least "
        "`webhook_disable_after_s`, disable a webhook.",
    )
    webhook_disable_after_s: float = Field(
        86400.0,
        ge=0,
        description="How long a webhook must have been failing, without one success, before it "
        "is disabled.",
    )
    webhook_max_in_flight: int = Field(
        4, ge=1, description="Deliveries in flight per webhook per worker process."
    )
    webhook_concurrency: int = Field(
        64, ge=1, description="Deliveries in flight per webhooks worker process (all webhooks)."
    )
    webhook_delivery_retention_days: float = Field(
        30.0, gt=0, description="Finished deliveries older than this leave the delivery log."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'racksmith.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

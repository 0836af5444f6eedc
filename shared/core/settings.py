"""The one settings object.

Every field can be set from the environment as ``RACKSMITH_<FIELD>`` (upper case); the CLI
flags only override a few of them. Defaults describe the embedded single-process install.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from limits import parse as parse_rate
from pydantic import Field, SecretStr, computed_field, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

# Login-throttle windows are kept a day after their last attempt (a JetStream KV bucket's age).
MAX_THROTTLE_WINDOW_S = 24 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RACKSMITH_", extra="ignore")

    state_dir: Path = Field(
        Path(".racksmith"),
        description="Directory for the embedded database, NATS data and generated keys.",
    )
    secrets_dir: Path | None = Field(
        None,
        description="Directory of files named like the variables (e.g. `RACKSMITH_SECRET_KEY`), "
        "each holding that setting's value: how Kubernetes mounts Secrets. A variable set in "
        "the environment wins over its file.",
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
    nats_user: str | None = Field(
        None,
        description="NATS user of this process (one per component: `api`, `scanner`, "
        "`registrar`, `inventory`, `fetcher`, `jobs`, `webhooks`, `migrate`). Unset with the "
        "embedded server: `racksmith up` uses the generated `platform` user.",
    )
    nats_password: SecretStr | None = Field(None, description="Password of `RACKSMITH_NATS_USER`.")
    nats_tls_ca: Path | None = Field(
        None,
        description="CA bundle (PEM file) that signs the NATS server's certificate; set it with "
        "a `tls://` `RACKSMITH_NATS_URL`. Unset: the system trust store.",
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
    secret_key_previous: SecretStr | None = Field(
        None,
        description="Comma-separated former signing keys whose tokens are still accepted (new "
        "tokens are signed with `secret_key`): rotating the key without ending every session.",
    )
    credential_key: SecretStr | None = Field(
        None,
        description="Fernet key encrypting stored BMC passwords and webhook secrets. Unset in "
        "embedded mode: generated into the state dir; required in production mode.",
    )
    access_token_lifetime_s: int = Field(24 * 3600, gt=0, description="Access token lifetime.")
    refresh_token_lifetime_s: int = Field(7 * 24 * 3600, gt=0, description="Refresh lifetime.")
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long an API process trusts a user's cached standing (token version, "
        "active, superuser) before reading it again; a change made through another replica "
        "reaches this one within this time (0: read on every request).",
    )
    token_rate_limit: str = Field(
        "20/minute",
        description="Attempts per client address on /api/token/ (limits syntax, e.g. 20/minute).",
    )
    token_username_rate_limit: str = Field(
        "20/10 minutes",
        description="Failed logins per username on /api/token/, from any address; beyond it "
        "that username is refused (429) until the window has room again.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated CIDRs of the proxies in front of the API (ingress "
        "controller, load balancer) whose `X-Forwarded-For` is believed; the client is the "
        "right-most address in it that is not a trusted proxy. Empty: the peer address.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body accepted (413 beyond it), counted as it streams in; "
        "upload routes set their own cap.",
    )
    sse_max_streams_per_user: int = Field(
        10,
        ge=1,
        description="Open `/api/events/stream/` connections per user and API process; one more "
        "answers 429.",
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
        "empty: any. Loopback, link-local, multicast, unspecified and reserved addresses are "
        "refused unless a network listed here lies inside their block (e.g. `127.0.0.0/8`); "
        "`racksmith up --lab` adds its lab network.",
    )
    scan_chunk_size: int = Field(
        256, ge=1, le=65_536, description="Addresses per scan chunk (the unit a replica takes)."
    )
    scan_concurrency: int = Field(
        2048,
        ge=1,
        description="TCP connects in flight per scanner process (over all its chunks); the "
        "most it adapts up to.",
    )
    scan_handshake_concurrency: int = Field(
        256,
        ge=1,
        description="TLS handshakes plus Redfish requests in flight per scanner process; the "
        "most it adapts up to (it halves while the process's event loop runs late).",
    )
    scan_retry_concurrency: int = Field(
        32,
        ge=1,
        description="Probes in flight per scanner process in the second pass over addresses "
        "that accepted a connection and then timed out in the first (silent addresses are "
        "retried at the connect limit).",
    )
    scan_connect_timeout_s: float = Field(
        1.0, gt=0, description="TCP connect timeout per probe; silent addresses cost this."
    )
    scan_probe_timeout_s: float = Field(
        20.0,
        gt=0,
        description="TLS handshake plus `GET /redfish/v1/` timeout per responder (real BMCs "
        "take up to ~20 s on one call; only addresses that accept a connection pay it). Time "
        "the scanner's own event loop spends stalled does not count against either timeout.",
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
    deploy_install_timeout_s: float = Field(
        3600.0,
        gt=0,
        description="How long an OS installer gets, from the power-cycle, to call home or "
        "power the server off; past it the deployment fails with `installer_timeout`.",
    )
    deploy_deadline_s: float = Field(
        3 * 3600.0,
        gt=0,
        description="Deadline of a deployment job, from its creation (past it: cleanup, then "
        "`deadline_exceeded`).",
    )
    job_cleanup_timeout_s: float = Field(
        600.0,
        gt=0,
        description="How long the cleanup of a cancelled, failed or expired job (a deployment: "
        "power off, eject, boot override cleared) may take, past the job's deadline.",
    )
    call_home_url: str | None = Field(
        None,
        description="Base URL of the API as installers reach it, for their call-home "
        "(`<url>/api/deployment/call_home/<token>/`). Unset: `RACKSMITH_PUBLIC_URL`, else the "
        "API's own host and port.",
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
        description="Comma-separated CIDRs of internal webhook receivers (e.g. `10.20.0.0/16`); "
        "besides them only globally routable addresses are allowed. Loopback, link-local and "
        "cloud metadata addresses need a network named inside their block.",
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

    artifact_store: Literal["file", "s3"] = Field(
        "file",
        description="Where firmware binaries and OS images are kept: `file` (a directory, "
        "`RACKSMITH_ARTIFACT_DIR`) or `s3` (any S3-compatible service).",
    )
    artifact_dir: Path | None = Field(
        None, description="Directory of the `file` store. Unset: `artifacts` in the state dir."
    )
    artifact_s3_bucket: str | None = Field(None, description="Bucket of the `s3` store.")
    artifact_s3_prefix: str = Field("", description="Key prefix inside the bucket.")
    artifact_s3_endpoint: str | None = Field(
        None,
        description="S3 endpoint URL for MinIO, Ceph and other S3-compatible services (path-style "
        "addressing); unset: AWS.",
    )
    artifact_s3_region: str = Field("us-east-1", description="S3 region.")
    artifact_s3_access_key_id: SecretStr | None = Field(
        None, description="S3 access key; unset: the AWS default chain (`AWS_*`, web identity)."
    )
    artifact_s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    artifact_host: str = Field(
        "127.0.0.1", description="Address the BMC-facing artifact server listens on."
    )
    artifact_port: int = Field(
        8001, ge=0, le=65535, description="Port the BMC-facing artifact server listens on."
    )
    artifact_url: str | None = Field(
        None,
        description="Base URL BMCs fetch artifacts from (plain HTTP, reachable from the BMC "
        "networks). Unset: `http://RACKSMITH_ARTIFACT_HOST:RACKSMITH_ARTIFACT_PORT`.",
    )
    artifact_source_allowed_networks: str = Field(
        "",
        description="Comma-separated CIDRs of internal artifact sources (e.g. `10.30.0.0/16`); "
        "besides them `source_url`s of firmware and OS images (and every redirect) may resolve "
        "only to globally routable addresses. Loopback, link-local and cloud metadata addresses "
        "need a network named inside their block.",
    )
    artifact_fetch_timeout_s: float = Field(
        60.0, gt=0, description="Connect timeout, and longest silence, of a `source_url` download."
    )
    firmware_max_bytes: int = Field(
        4 * 1024**3, gt=0, description="Largest firmware binary accepted."
    )
    os_image_max_bytes: int = Field(16 * 1024**3, gt=0, description="Largest OS image accepted.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_artifact_dir(self) -> Path:
        return self.artifact_dir or self.state_dir / "artifacts"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_call_home_url(self) -> str:
        base = self.call_home_url or self.public_url or f"http://{self.host}:{self.port}"
        return base.rstrip("/")

    @property
    def effective_artifact_url(self) -> str:
        if self.artifact_url:
            return self.artifact_url.rstrip("/")
        return f"http://{self.artifact_host}:{self.artifact_port}"

    @field_validator("token_rate_limit", "token_username_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            item = parse_rate(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as 20/minute") from None
        if item.get_expiry() > MAX_THROTTLE_WINDOW_S:
            raise ValueError(f"{value!r}: the window may be at most a day")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The secrets dir is itself a setting, so it is known only from the other sources.
        directory = None
        if isinstance(init_settings, InitSettingsSource):
            directory = init_settings.init_kwargs.get("secrets_dir")
        directory = directory or os.environ.get("RACKSMITH_SECRETS_DIR") or None
        files = SecretsSettingsSource(settings_cls, secrets_dir=directory)
        return init_settings, env_settings, dotenv_settings, files

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'racksmith.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

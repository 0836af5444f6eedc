"""A real S3-compatible server for tests: moto's server mode, as its own process on a free
loopback port, with one bucket."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from botocore.client import BaseClient
from pydantic import SecretStr

from shared.platform.natsserver import free_port
from shared.platform.orphans import die_with_parent

ACCESS_KEY = "racksmith-test"
SECRET_KEY = "racksmith-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def client(self) -> BaseClient:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def settings(self) -> dict[str, object]:
        """Settings selecting this server as the artifact store."""
        return {
            "artifact_store": "s3",
            "artifact_s3_bucket": self.bucket,
            "artifact_s3_endpoint": self.endpoint,
            "artifact_s3_region": REGION,
            "artifact_s3_access_key_id": SecretStr(ACCESS_KEY),
            "artifact_s3_secret_access_key": SecretStr(SECRET_KEY),
        }

    def keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listing.get("Contents", [])]

    def pending_uploads(self) -> list[str]:
        listing = self.client().list_multipart_uploads(Bucket=self.bucket)
        return [item["Key"] for item in listing.get("Uploads", [])]


@contextmanager
def s3_server(bucket: str = "racksmith-artifacts") -> Iterator[S3Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    server = S3Server(f"http://127.0.0.1:{port}", bucket)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.client().create_bucket(Bucket=bucket)
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)

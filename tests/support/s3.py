"""S3 API servers (moto) on 127.0.0.1 for tests that talk to S3 for real over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import boto3
import botocore.exceptions
from botocore.config import Config

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(url: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll an HTTP URL until it answers at all (any status). Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class S3Endpoint:
    """Where and how to reach an S3 API: what boto3 (and maintainer's config) need."""

    endpoint_url: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def client(self, **config):
        """A boto3 S3 client for this endpoint (path-style, few retries)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                **config,
            ),
        )


class ThreadedS3Server(S3Endpoint):
    """moto's ThreadedMotoServer in this process: the session's shared S3."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        port = free_port()
        super().__init__(endpoint_url=f"http://127.0.0.1:{port}")
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        wait_until_answering(self.endpoint_url)

    def stop(self) -> None:
        self._server.stop()


class ProcessS3Server(S3Endpoint):
    """moto_server in a child process: its own state, and it can go away mid-request.

    ``stop()`` kills it (like a crashed or unreachable S3), ``start()`` brings up an
    empty server on the same port again.
    """

    def __init__(self) -> None:
        self.port = free_port()
        super().__init__(endpoint_url=f"http://127.0.0.1:{self.port}")
        self._process: subprocess.Popen | None = None
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_answering(self.endpoint_url)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the server at once (SIGKILL): open connections break mid-transfer."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        self._process = None


def delete_bucket(client, bucket: str) -> None:
    """Abort multipart uploads, delete every object (and version), then the bucket.
    A bucket that is already gone is fine."""
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        # List everything first, then delete: deleting while paginating makes moto's
        # version markers skip keys. Repeat (bounded) until the bucket is empty.
        for _ in range(20):
            keys = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket)
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if not keys:
                break
            for start in range(0, len(keys), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000], "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise


@dataclass
class S3Container(S3Endpoint):
    """moto in a container on a docker network: containers reach it at
    ``internal_endpoint_url`` (http://ALIAS:5000), tests at ``endpoint_url``."""

    internal_endpoint_url: str = ""
    container: object = None


def start_moto_container(client, image: str, network: str, alias: str = "s3") -> S3Container:
    """Start IMAGE (maintainer-test/moto:latest) on NETWORK with ALIAS, port 5000
    published on 127.0.0.1; returns once it answers. Removes the container on error."""
    from .docker_resources import docker_labels, unique_name

    container = client.containers.create(
        image,
        name=unique_name("maintainer-test-s3"),
        labels=docker_labels(),
        ports={"5000/tcp": ("127.0.0.1", None)},
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=[alias])},
        detach=True,
    )
    try:
        container.start()
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"])
        server = S3Container(
            endpoint_url=f"http://127.0.0.1:{port}",
            internal_endpoint_url=f"http://{alias}:5000",
            container=container,
        )
        wait_until_answering(server.endpoint_url)
        return server
    except BaseException:
        container.remove(force=True, v=True)
        raise

"""Tiny service images for update tests, built here from the test bed's Python image.

Each has a HEALTHCHECK. v1 and v3 become healthy; v2 starts but never does (its
healthcheck keeps failing), like a broken release. Every start appends the
version to /data/versions, so a test can see which images ran on the volume.
SIGTERM ends the service at once (exit 0), as a well-behaved service does. A file
/data/fail-next-start makes any version start unhealthy (a rollback that fails).
"""

from __future__ import annotations

import io
import tarfile

import docker

from support.docker_resources import TEST_LABEL

# Without the pid label: the same recipe gives the same image ids in every session (build cache).
STABLE_LABELS = {TEST_LABEL: "1"}
BASE = "maintainer-test/python:3.11"
LOCAL_REPO = "maintainer-test/update-svc"

APP = b"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
version = os.environ["APP_VERSION"]
if os.path.exists("/tmp/healthy"):  # from an earlier start of this container
    os.remove("/tmp/healthy")
os.makedirs("/data", exist_ok=True)
with open("/data/versions", "a") as f:
    f.write(version + "\\n")
delay = float(os.environ.get("APP_HEALTHY_AFTER", "0"))
time.sleep(delay)
if os.environ.get("APP_HEALTHY") == "1" and not os.path.exists("/data/fail-next-start"):
    open("/tmp/healthy", "w").close()
while True:
    time.sleep(3600)
"""

DOCKERFILE = """
FROM {base}
ARG VERSION
ARG HEALTHY
ENV APP_VERSION=$VERSION APP_HEALTHY=$HEALTHY
COPY app.py /app.py
LABEL org.example.version=$VERSION
HEALTHCHECK --interval=1s --timeout=3s --retries=2 CMD ["test", "-f", "/tmp/healthy"]
CMD ["python3", "-u", "/app.py"]
"""


def _context(version: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", DOCKERFILE.format(base=BASE).encode()), ("app.py", APP)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build_versions(client: docker.DockerClient) -> dict[str, str]:
    """Build (or reuse) v1, v2 (unhealthy) and v3 as LOCAL_REPO:v1.. ; returns version -> image id."""
    ids = {}
    for version, healthy in (("v1", "1"), ("v2", "0"), ("v3", "1")):
        image, _ = client.images.build(fileobj=_context(version), custom_context=True, tag=f"{LOCAL_REPO}:{version}",
                                       buildargs={"VERSION": version, "HEALTHY": healthy}, labels=STABLE_LABELS,
                                       rm=True, forcerm=True)
        ids[version] = image.id
    return ids


def push(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Push repository:tag; returns the registry digest."""
    digest = None
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise AssertionError(f"push {repository}:{tag}: {line['error']}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    assert digest, f"push {repository}:{tag} reported no digest"
    return digest


def publish(client: docker.DockerClient, image_id: str, repository: str, tag: str) -> str:
    """Make ``repository:tag`` name ``image_id`` in the registry; returns its digest."""
    client.api.tag(image_id, repository, tag, force=True)
    return push(client, repository, tag)

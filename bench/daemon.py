"""Measure the image and the idle daemon: image size, and resident memory of an idle daemon.

    .venv/bin/python bench/daemon.py [--base maintainer-test/python:3.11] [--idle 60]

Builds the image (offline: the host downloads the dependency wheels, the build
installs them with --build-arg PIP_NO_INDEX=1, as the test bed's images do),
starts ``maintainer daemon`` in it with a config of every job type pointing at
S3 and a database (nothing runs while idle), answers /health and /metrics a
few times so every lazy import that serving does has happened, waits, and
reads VmRSS/VmHWM of the daemon process from /proc inside the container.
Prints one JSON line; results are also written to bench/results/daemon.json.

The e2e tests import ``build_image`` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEEL_CACHE = REPO / "build" / "image-wheels"
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "schedules.yaml")
CONTEXT_DIRS = ("maintainer", "restore/checks")  # what the Dockerfile copies (see .dockerignore)
# The test bed's clean-up removes labelled containers of dead processes only,
# so the bench's container names this process.
LABELS = {"maintainer.test": "1", "maintainer.test.pid": str(os.getpid())}


def dependency_wheels(dest: Path = WHEEL_CACHE) -> Path:
    """Download (once) the wheels the image needs, with the host's pip setup."""
    dest.mkdir(parents=True, exist_ok=True)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    marker = dest / ".requirements"
    wanted = "\n".join(sorted(deps + ["setuptools>=68", "wheel"]))
    if marker.exists() and marker.read_text() == wanted:
        return dest
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
                    *deps, "setuptools>=68", "wheel"], check=True, timeout=900)
    marker.write_text(wanted)
    return dest


def build_image(tag: str, base: str | None = "maintainer-test/python:3.11", *, offline: bool = True) -> str:
    """docker build the repo's Dockerfile as ``tag``; returns the tag. Raises CalledProcessError."""
    with tempfile.TemporaryDirectory(prefix="maintainer-image-") as tmp:
        context = Path(tmp)
        for name in CONTEXT_FILES:
            shutil.copy2(REPO / name, context / name)
        for name in CONTEXT_DIRS:
            shutil.copytree(REPO / name, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        args = ["docker", "build", "--quiet", "--label", "maintainer.test=1", "-t", tag]
        if base:
            args += ["--build-arg", f"BASE_IMAGE={base}"]
        if offline:
            shutil.copytree(dependency_wheels(), context / "wheels")
            args += ["--build-arg", "PIP_NO_INDEX=1"]
        subprocess.run([*args, str(context)], check=True, timeout=1200, stdout=subprocess.DEVNULL)
    return tag


BENCH_CONFIG = """
storage:
  s3: {url: "s3://bench-bucket/maintainer", endpoint_url: "http://127.0.0.1:9", path_style: true,
       access_key_id: benchkey, secret_access_key: benchsecret, region: us-east-1}
databases:
  app: {host: 127.0.0.1, password: benchpw}
daemon: {state_dir: /var/lib/maintainer/state, listen: "127.0.0.1:9187"}
jobs:
  backup: {type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: s3}
  drill: {type: restore_drill, schedule: "30 5 * * 0", databases: [app], storage: s3}
  snapshot: {type: config_snapshot, schedule: "0 4 * * *", storage: s3}
  prune: {type: docker_prune, schedule: "0 5 * * *"}
  update: {type: image_update, schedule: "0 2 * * 1", images: ["postgres:15"]}
"""


def measure(tag: str, idle: float) -> dict:
    name = f"maintainer-bench-{uuid.uuid4().hex[:8]}"
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True,
                              text=True, check=True).stdout)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "schedules.yaml"
        cfg.write_text(BENCH_CONFIG)
        cfg.chmod(0o644)
        labels = [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]
        subprocess.run(["docker", "run", "-d", "--name", name, *labels, "--memory", "256m",
                        "--cpus", "0.5", "-v", f"{cfg}:/etc/maintainer/schedules.yaml:ro", tag, "--log-format",
                        "json", "daemon"], check=True, capture_output=True, timeout=60)
        try:
            deadline = time.monotonic() + 60
            while True:
                probe = subprocess.run(["docker", "exec", name, "maintainer", "healthcheck"], capture_output=True,
                                       text=True, timeout=60)
                if "does not answer" not in probe.stderr or time.monotonic() > deadline:
                    break
                time.sleep(1)
            for _ in range(3):  # serve /health and /metrics: every import serving needs has happened
                subprocess.run(["docker", "exec", name, "python3", "-c",
                                "import urllib.request as u\nfor p in ('health','metrics'):\n"
                                " try: u.urlopen('http://127.0.0.1:9187/'+p, timeout=30).read()\n"
                                " except Exception: pass"], capture_output=True, timeout=120)
            time.sleep(idle)
            status = subprocess.run(["docker", "exec", name, "sh", "-c",
                                     "grep -E 'VmRSS|VmHWM' /proc/1/status"], capture_output=True, text=True,
                                    check=True).stdout
            mem = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()}
            stats = json.loads(subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", name],
                                              capture_output=True, text=True, check=True).stdout)
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
    return {"image": tag, "image_size_mb": round(size / 1e6, 1), "idle_rss_mb": round(mem["VmRSS"] / 2**20, 1),
            "peak_rss_mb": round(mem["VmHWM"] / 2**20, 1), "docker_stats_mem": stats.get("MemUsage"),
            "idle_seconds": idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="maintainer-test/python:3.11", help="BASE_IMAGE build argument")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds to idle before reading memory")
    parser.add_argument("--online", action="store_true", help="let the build use PyPI instead of host wheels")
    args = parser.parse_args()
    tag = f"maintainer-bench:{uuid.uuid4().hex[:8]}"
    build_image(tag, args.base, offline=not args.online)
    try:
        result = measure(tag, args.idle)
        result["base_image"] = args.base
        if args.base:
            base = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", args.base],
                                      capture_output=True, text=True, check=True).stdout)
            # What the Dockerfile adds on top of whichever base it is built on.
            result["base_image_size_mb"] = round(base / 1e6, 1)
            result["added_by_dockerfile_mb"] = round(result["image_size_mb"] - base / 1e6, 1)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "daemon.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

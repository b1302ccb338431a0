"""`maintainer run` of the Docker jobs without a usable Docker socket: exit 1 and one
clear error line, no traceback. Runs the installed command as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MAINTAINER = str(Path(sys.executable).with_name("maintainer"))
SOCKET = "/var/run/docker.sock"

CONFIG = """\
storage:
  local: {url: "file://%(dir)s/store"}
jobs:
  prune: {type: docker_prune, schedule: "0 5 * * *", label_filter: ["maintainer.test.none=1"]}
  update-images: {type: image_update, schedule: "0 2 * * 1", images: ["127.0.0.1:5555/none/x:1"]}
  snapshot: {type: config_snapshot, schedule: "0 4 * * *", storage: local, compose_project: maintainer-test-none}
"""


@pytest.fixture
def world_readable_config():
    """A config any user can read (pytest's tmp_path is private to root)."""
    directory = tempfile.mkdtemp(prefix="maintainer-test-")
    os.chmod(directory, 0o777)
    path = Path(directory) / "schedules.yaml"
    path.write_text(CONFIG % {"dir": directory})
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def run(args, env_extra=None, prefix=()):
    env = {**os.environ, **(env_extra or {}), "HOME": "/tmp"}
    return subprocess.run([*prefix, MAINTAINER, *args], capture_output=True, text=True, env=env, timeout=60)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize("job", ["prune", "update-images", "snapshot"])
def test_a_missing_docker_socket_is_one_clear_error(world_readable_config, job):
    proc = run(["--config", str(world_readable_config), "run", job],
               {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [f"Error: {job}: Docker socket /nonexistent/docker.sock does not exist"]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_socket_without_permission_is_one_clear_error(world_readable_config, docker_client):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this test needs root and setpriv to drop to an unprivileged user")
    assert not os.stat(SOCKET).st_mode & 0o006, "the socket must not be world-accessible for this test"
    proc = run(["--config", str(world_readable_config), "run", "prune"], {"DOCKER_HOST": f"unix://{SOCKET}"},
               prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == [f"Error: prune: no permission to use the Docker socket {SOCKET}"]
    assert "Traceback" not in proc.stderr + proc.stdout

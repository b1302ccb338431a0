"""The installed `maintainer` command, run as a user would: exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MAINTAINER = Path(sys.executable).with_name("maintainer")


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MAINTAINER_CONFIG"}
    full_env.update(env or {})
    return subprocess.run([str(MAINTAINER), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or REPO, timeout=60)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("validate", "run", "backups", "restore", "daemon", "status", "snapshots"):
        assert f"  {command}" in result.stdout, command


def test_version():
    from maintainer import __version__

    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_the_shipped_config_validates_and_shows_next_runs():
    result = run("validate")  # ./schedules.yaml is found from the repository root
    assert result.returncode == 0, result.stderr
    for name in ("backup", "drill", "snapshot", "prune", "update-images"):
        assert name in result.stdout
    assert "NEXT RUN" in result.stdout


def test_validate_json_never_contains_a_secret(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("Zebra-Secret-998877")
    result = run("--config", str(REPO / "schedules.yaml"), "validate", "--json", "--strict",
                 env={"PGPASSWORD_FILE": str(secret), "S3_ACCESS_KEY_ID_FILE": str(secret),
                      "S3_SECRET_ACCESS_KEY_FILE": str(secret)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True and len(data["jobs"]) == len(yaml.safe_load((REPO / "schedules.yaml").read_text())["jobs"])
    assert "Zebra-Secret-998877" not in result.stdout + result.stderr


def test_five_mistakes_are_listed_with_lines_and_exit_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("""timezone: Mars/Olympus
storage:
  local: {url: "file:///b", colour: blue}
databases:
  app: {host: db, port: notaport}
jobs:
  backup: {type: pg_backup, schedule: "61 3 * * *", databases: [app], storage: nowhere}
""")
    result = run("--config", str(config), "validate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"Error: {config}: 5 problem(s) in the configuration"
    problems = [line for line in lines[1:] if line.startswith("  - ")]
    assert len(problems) == 5
    for expected in (":1: at 'timezone'", ":3: at 'storage.local.colour'", ":5: at 'databases.app.port'",
                     ":7: at 'jobs.backup.schedule'", ":7: at 'jobs.backup.storage'"):
        assert any(expected in p for p in problems), expected


def test_a_missing_config_file_is_one_clear_line(tmp_path):
    result = run("--config", str(tmp_path / "nope.yaml"), "validate")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"Error: config file {tmp_path / 'nope.yaml'} does not exist"
    assert "Traceback" not in result.stderr


def test_an_unknown_job_name_is_exit_2(tmp_path):
    result = run("--config", str(REPO / "schedules.yaml"), "run", "no-such-job")
    assert result.returncode == 2
    assert "no job named 'no-such-job'" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_flag_is_exit_2():
    result = run("validate", "--no-such-flag")
    assert result.returncode == 2
    assert "No such option" in result.stderr and "Traceback" not in result.stderr


def test_a_job_whose_secret_file_is_missing_fails_with_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"""storage:
  local: {{url: "file://{tmp_path}/store"}}
databases:
  app:
    host: 127.0.0.1
    port: 1
    password_file: {tmp_path}/missing-secret
jobs:
  backup: {{type: pg_backup, schedule: "@daily", databases: [app], storage: local}}
""")
    result = run("--config", str(config), "--log-format", "json", "run", "backup")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "missing-secret does not exist" in result.stderr


def test_json_output_is_pure_json_on_stdout_with_logs_on_stderr(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"""storage:
  local: {{url: "file://{tmp_path}/store"}}
jobs:
  prune-nothing:
    type: docker_prune
    schedule: "@daily"
    label_filter: ["maintainer.test.none=1"]
""")
    result = run("--config", str(config), "run", "prune-nothing", "--dry-run", "--json",
                 env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    data = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert data["job"] == "prune-nothing" and data["status"] == "failed"
    assert "job.started" in result.stderr

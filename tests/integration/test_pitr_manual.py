"""The manual point-in-time procedure in restore/README.md recovers an archive written by the
real wal_archive and pg_basebackup jobs with standard tools only (sha256sum, age, zstd, tar,
the PostgreSQL 15 binaries): the block is run exactly as written, as user postgres."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.encryption import encryption, make_key
from support.pgdata import REPO
from support.pitr import BEFORE, DBNAME, SERVER, archived_scenario
from support.postgres import remove_postgres

pytestmark = pytest.mark.integration

PGBIN = "/usr/lib/postgresql/15/bin"


def manual_procedure() -> str:
    text = (REPO / "restore" / "README.md").read_text()
    m = re.search(r"<!-- manual-pitr:begin -->\s*```bash\n(.*?)```\s*<!-- manual-pitr:end -->", text, re.S)
    assert m, "restore/README.md has no manual-pitr block"
    return m.group(1)


def as_postgres(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd="/")


def run_procedure(store: Path, target: str, age_key: Path | None = None):
    """Copy the storage where user postgres can read it, run the block; (result, work dir, env)."""
    top = Path(tempfile.mkdtemp(prefix="maintainer-manual-pitr-"))
    shutil.copytree(store, top / "store")
    if age_key is not None:
        shutil.copy(age_key, top / "age.key")
    shutil.chown(top, "postgres", "postgres")
    for path in top.rglob("*"):
        shutil.chown(path, "postgres", "postgres")
    env = {"PATH": os.environ["PATH"], "HOME": str(top), "STORE": str(top / "store"), "SERVER": SERVER,
           "TARGET": target, "WORK": str(top / "work"), "PGBIN": PGBIN, "PORT": "5439", "PGUSER": "postgres",
           "AGE_KEY": str(top / "age.key")}
    out = as_postgres(["bash", "-c", manual_procedure()], env, timeout=600)
    return out, top, env


def recovered_ids(top: Path, env: dict) -> list[int]:
    out = as_postgres([f"{PGBIN}/psql", "-X", "-A", "-t", "-h", str(top / "work"), "-p", "5439", "-d", DBNAME,
                       "-c", "SELECT id FROM marker ORDER BY id"], env, timeout=60)
    assert out.returncode == 0, out.stderr
    return [int(x) for x in out.stdout.split()]


def server_log(top: Path) -> str:
    log = top / "work" / "server.log"
    return log.read_text()[-3000:] if log.exists() else ""


def stop(top: Path, env: dict) -> None:
    if (top / "work" / "data" / "postmaster.pid").exists():
        as_postgres([f"{PGBIN}/pg_ctl", "-D", str(top / "work" / "data"), "-m", "immediate", "stop"], env, 60)
    shutil.rmtree(top, ignore_errors=True)


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_the_documented_manual_procedure_recovers_to_the_target_time(docker_client, pg_image, tmp_path):
    scenario = archived_scenario(docker_client, pg_image, tmp_path)
    remove_postgres(scenario.server)
    out, top, env = run_procedure(scenario.store, iso(scenario.target))
    try:
        assert out.returncode == 0, out.stderr + out.stdout + server_log(top)
        assert "recovery stopping before commit" in out.stdout
        assert recovered_ids(top, env) == BEFORE
    finally:
        stop(top, env)


def test_the_manual_procedure_recovers_an_encrypted_archive_to_the_end_with_the_age_cli(docker_client, pg_image,
                                                                                       tmp_path):
    key, recipient = make_key(tmp_path, "age.key")
    scenario = archived_scenario(docker_client, pg_image, tmp_path,
                                 storage_extra={"encryption": encryption([recipient], [key])})
    remove_postgres(scenario.server)
    assert any(p.name.endswith(".zst.age") for p in (scenario.store / "wal").rglob("*"))
    out, top, env = run_procedure(scenario.store, "", age_key=key)
    try:
        assert out.returncode == 0, out.stderr + out.stdout + server_log(top)
        assert "to the end of the archive" in out.stdout
        assert recovered_ids(top, env) == []  # the DELETE at the end is replayed too
    finally:
        stop(top, env)

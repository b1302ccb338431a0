"""The README's first command works as written: scripts/quickstart.sh backs up a sandbox
PostgreSQL with the installed `maintainer` command and lists the backup; a second run
adds a second backup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ID_ROW = re.compile(r"^(\d{8}T\d{6}Z)\s+contrivance\s+", re.M)


def test_the_quick_start_backs_up_the_sandbox_and_lists_it_twice_in_a_row():
    qs_dir = Path(f"/var/tmp/maintainer-quickstart-test-{uuid.uuid4().hex[:8]}")  # readable by user postgres
    env = {**os.environ, "QS_DIR": str(qs_dir), "QS_SCALE": "1"}
    try:
        first = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], env=env, capture_output=True, text=True,
                               timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "backup (pg_backup): ok" in first.stdout
        assert len(ID_ROW.findall(first.stdout)) == 1
        second = subprocess.run(["bash", str(REPO / "scripts/quickstart.sh")], env=env, capture_output=True, text=True,
                                timeout=600)
        assert second.returncode == 0, second.stdout + second.stderr
        assert len(set(ID_ROW.findall(second.stdout))) == 2
        manifests = list((qs_dir / "backups" / "pg" / "contrivance").glob("*/manifest.json"))
        assert len(manifests) == 2
        # The sandbox server was stopped by the script's trap.
        assert not (qs_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(qs_dir, ignore_errors=True)

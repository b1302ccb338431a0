"""Timelines: a cluster recovered with --into-volume is promoted onto timeline 2; swapped
in as the live server, the real wal_archive job goes on archiving it on timeline 2 (with
the history file), and a point-in-time restore follows timeline 1 then timeline 2."""

from __future__ import annotations

import json

import docker.errors
import pytest

from maintainer.config import parse_config
from maintainer.wal import archive

from support.docker_resources import unique_name
from support.pgdata import db_entry
from support.pitr import (BEFORE, DBNAME, SERVER, archive_more, archived_scenario, marker_ids, pitr_leftovers,
                          start_on_volume)
from support.postgres import remove_postgres
from support.scenarios import document, run_cli, write_config

pytestmark = pytest.mark.integration

AFTER_SWAP = [101, 102, 103]


def test_archiving_continues_on_the_new_timeline_after_a_swap_and_restores_follow_it(docker_client, pg_image,
                                                                                    tmp_path):
    scenario = archived_scenario(docker_client, pg_image, tmp_path / "a")
    volume = unique_name("maintainer-test-pitr-vol")
    swapped = None
    try:
        out = run_cli(scenario.config_file, "restore", "--to-time", scenario.target.isoformat(),
                      "--into-volume", volume)
        assert out.returncode == 0, out.stderr
        # The swap: the recovered cluster becomes the live server, archived into the same storage.
        swapped = start_on_volume(docker_client, pg_image, volume, scenario.server)
        data = json.loads(json.dumps(scenario.data))
        data["databases"][SERVER].update(db_entry(swapped, DBNAME))
        config = parse_config(json.dumps(data), "swapped.yaml")
        archive_more(config, swapped, AFTER_SWAP, "after-swap")

        listing = archive.list_archive(scenario.storage, SERVER)
        assert listing.newest_timeline == 2 and 2 in listing.histories
        assert any(tli == 2 for tli, _ in listing.segments)
        config_file = write_config(tmp_path, data)

        out = run_cli(config_file, "restore", "--to-end", "--json")

        assert out.returncode == 0, out.stderr
        summary = document(out.stdout)
        assert summary["timeline"] == 3  # recovered along 1 -> 2, promoted onto a new one
        assert marker_ids(swapped, summary["restore_into"]) == BEFORE + AFTER_SWAP
        assert pitr_leftovers(docker_client) == []
    finally:
        if swapped is not None:
            remove_postgres(swapped)
        remove_postgres(scenario.server)
        try:
            docker_client.volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            pass

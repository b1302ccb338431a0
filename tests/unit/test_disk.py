"""The pure parts of disk watch: the engine's usage by kind, the threshold setting,
and what a check says."""

from __future__ import annotations

import json

import pytest

from maintainer.config.loader import parse_config
from maintainer.disk import SpaceCheck, Usage, space_checks, summarize_df
from maintainer.errors import ConfigError


def test_usage_by_kind_counts_reclaimable_as_docker_system_df_does():
    df = {"LayersSize": 1000,
          "Images": [{"Size": 600, "SharedSize": 100, "Containers": 1}, {"Size": 400, "SharedSize": 100, "Containers": 0}],
          "Containers": [{"SizeRw": 10, "State": "running"}, {"SizeRw": 5, "State": "exited"}],
          "Volumes": [{"UsageData": {"Size": 70, "RefCount": 1}}, {"UsageData": {"Size": 30, "RefCount": 0}},
                      {"UsageData": {"Size": -1, "RefCount": 0}}],
          "BuildCache": [{"Size": 8, "InUse": False, "Shared": False}, {"Size": 4, "InUse": True, "Shared": False},
                         {"Size": 50, "InUse": False, "Shared": True}]}
    assert summarize_df(df) == {"images": (1000, 500), "containers": (15, 5), "volumes": (100, 30),
                                "build_cache": (12, 8)}


def test_an_empty_engine_uses_nothing():
    assert summarize_df({}) == {k: (0, 0) for k in ("images", "containers", "volumes", "build_cache")}


def prune_config(threshold) -> dict:
    return {"jobs": {"prune": {"type": "docker_prune", "schedule": "0 5 * * 0", "when_free_below": threshold,
                               "watch_path": "/data"}}}


@pytest.mark.parametrize("written, percent", [("15%", 15.0), (15, 15.0), ("2.5 %", 2.5)])
def test_when_free_below_reads_a_percentage(written, percent):
    config = parse_config(json.dumps(prune_config(written)), "t.yaml")
    assert config.jobs["prune"].free_below_percent == percent
    assert config.jobs["prune"].when_free_below == f"{percent:g}%"


@pytest.mark.parametrize("written", ["0%", "100%", "lots", "-5"])
def test_when_free_below_outside_0_to_100_percent_is_a_config_error_naming_the_key(written):
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(prune_config(written)), "t.yaml")
    assert "jobs.prune.when_free_below" in " ".join(err.value.problems) + err.value.message


def test_a_check_below_its_threshold_fails_and_names_the_filesystem():
    config = parse_config(json.dumps(prune_config("20%")), "t.yaml")
    [check] = space_checks(config, read=lambda path: Usage(path, "/", 1000, 100))
    assert not check.ok
    assert check.message == ("filesystem / (watched path /data) has 10.0% free (100 B of 1000 B), below 20% "
                             "(docker_prune prune.when_free_below)")
    assert SpaceCheck("prune", "/data", 5.0, Usage("/data", "/data", 1000, 100)).ok

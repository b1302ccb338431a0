"""The shipped schedules.yaml, broken in every way Hypothesis can think of.

Each mutated file is either rejected with every problem naming file, line and
key path, or it loads, `validate` can list it, and a dry run of every job ends
without an internal error. The outside world is kept small and fast: S3 is
moto in-process, PostgreSQL a closed local port, Docker a socket that does
not exist; each then fails with an ordinary error, which is fine here.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintainer.config import load_config
from maintainer.errors import ConfigError
from maintainer.runner import run_job
from maintainer.schedule import next_fire

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((REPO / "schedules.yaml").read_text())
SECRETS = {"S3_ACCESS_KEY_ID_FILE": "AKIA-mutation-7f3a", "S3_SECRET_ACCESS_KEY_FILE": "secret-mutation-9b2c",
           "PGPASSWORD_FILE": "pg-mutation-4d1e"}


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found += _paths(value, path + (key,))
    return found


PATHS = [p for p in _paths(SHIPPED) if p]
MAPPINGS = [p for p in _paths(SHIPPED) if isinstance(functools.reduce(lambda n, k: n[k], p, SHIPPED), dict)]

WRONG_TYPES = [0, 1, 1.5, True, False, "text", [], ["x"], {}, {"x": 1}]
EMPTY = ["", " ", None]
OUT_OF_RANGE = [-1, 0, 65536, 10**12, -(10**12), 2**63, 1e308, float("inf"), float("nan"), "-1", "0s",
                "99999999999d", "1e400", "0.0.0.0:0", "host:99999", "not-a-port"]
WEIRD_TEXT = ["${NO_SUCH_VAR", "${NO_SUCH_VAR}", "${}", "$PGHOST", "a/b", "../x", "db:5432", "ftp://x",
              "pg_backup", "restore_drill", "@daily", "* * *"]
VALUES = WRONG_TYPES + EMPTY + OUT_OF_RANGE + WEIRD_TEXT

set_value = st.tuples(st.just("set"), st.sampled_from(PATHS), st.sampled_from(VALUES))
mutation = st.one_of(
    set_value, set_value, set_value,  # most mistakes are a wrong value
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("add"), st.sampled_from([m for m in MAPPINGS if m]), st.sampled_from(["colour", "password", "type"])),
    st.one_of(st.tuples(st.just("set"), st.just(()), st.sampled_from([None, "text", [], {}, [{"jobs": {}}]])),
              st.tuples(st.just("add_top"), st.just(()), st.just("colour"))),
)


def mutate(data: Any, change: tuple) -> Any:
    """Apply one change; a path that an earlier change removed or replaced is left alone."""
    kind, path, value = change
    if not path:
        if kind == "add_top" and isinstance(data, dict):
            data[value] = "x"
            return data
        return copy.deepcopy(value) if kind == "set" else data
    parent = data
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return data
    last = path[-1]
    if isinstance(parent, dict):
        present = last in parent
    elif isinstance(parent, list) and isinstance(last, int):
        present = last < len(parent)
    else:
        return data
    if not present:
        return data
    if kind == "add":
        if isinstance(parent[last], dict):
            parent[last][value] = "x"
    elif kind == "delete":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(value)
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Secret files, environment and an in-process S3 with the shipped bucket; Docker and PostgreSQL absent."""
    from moto import mock_aws

    import boto3
    import botocore.session

    root = tmp_path_factory.mktemp("mutations")
    env = {"PGHOST": "127.0.0.1", "MAINTAINER_LOCAL_BACKUPS": str(root / "backups")}
    for name, value in SECRETS.items():
        (root / name).write_text(value + "\n")
        env[name] = str(root / name)
    process_env = {"DOCKER_HOST": f"unix://{root}/no-docker.sock", "AWS_CONFIG_FILE": os.devnull,
                   "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "MAINTAINER_STATE_DIR": str(root / "state")}
    # Every S3 client would read botocore's service models from disk again; share one loader.
    loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)
    with mock.patch.dict(os.environ, process_env), mock.patch.object(botocore.session, "create_loader", loader), \
            mock_aws():
        s3 = boto3.client("s3", region_name="eu-central-1")
        s3.create_bucket(Bucket="contrivance-backups", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        yield root, env


def test_the_unmutated_file_loads_and_dry_runs_in_this_world(world):
    root, env = world
    path = root / "schedules.yaml"
    path.write_text(yaml.safe_dump(SHIPPED, sort_keys=False))
    config = load_config(path, env=env)
    results = {name: run_job(config, name, dry_run=True) for name in config.jobs}
    assert results["backup"].ok, results["backup"].errors  # S3 (moto) reached with the secret files' keys


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(mutation, min_size=1, max_size=3))
def test_a_mutated_shipped_config_is_rejected_clearly_or_dry_runs_without_internal_errors(world, changes):
    root, env = world
    data = copy.deepcopy(SHIPPED)
    for change in changes:
        data = mutate(data, change)
    path = root / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    where = re.compile(rf"^{re.escape(str(path))}:\d+: at '[^']+': \S")

    try:
        config = load_config(path, env=env)
    except ConfigError as exc:
        assert exc.problems, exc.message
        for problem in exc.problems:
            assert where.match(problem), f"no file:line and key path: {problem!r}"
            assert not any(secret in problem for secret in SECRETS.values()), problem
        return

    for spec in config.jobs.values():  # what `validate` prints
        if spec.enabled and spec.schedule is not None:  # None: a continuous job (wal_archive)
            next_fire(spec.schedule, config.timezone)
    for name in config.jobs:
        result = run_job(config, name, dry_run=True)
        for error in result.errors:
            assert not error.startswith("internal error"), f"{name}: {error}"
            assert not any(secret in error for secret in SECRETS.values()), error

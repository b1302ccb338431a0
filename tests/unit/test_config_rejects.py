"""Configs that must be rejected: each mistake named with file, line and key path, never a traceback."""

from __future__ import annotations

import re

import pytest

from maintainer.cli.main import main
from maintainer.config import parse_config
from maintainer.errors import ConfigError

pytestmark = pytest.mark.unit

GOOD = """\
storage:
  local: {url: "file:///var/backups"}
databases:
  app:
    host: db
    password: s3cr3t-value
daemon:
  listen: 127.0.0.1:9187
jobs:
  backup: {type: pg_backup, schedule: "15 3 * * *", databases: [app], storage: local}
"""

WHERE = re.compile(r"^test\.yaml:\d+: at '[^']+': \S")


def problems_of(text: str, env=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env=env or {})
    problems = info.value.problems
    assert problems, info.value.message
    for p in problems:
        assert WHERE.match(p), f"no file:line and key path in {p!r}"
    return problems


def only_problem(text: str, env=None) -> str:
    problems = problems_of(text, env)
    assert len(problems) == 1, problems
    return problems[0]


def validate(tmp_path, text: str, capsys) -> tuple[int, str]:
    """`maintainer --config F validate`, in-process: exit code and stderr."""
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(path), "validate"])
    return exit_.value.code, capsys.readouterr().err


# -- a config without jobs ------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n"])
def test_an_empty_file_or_one_with_only_comments_is_rejected_at_line_1(text):
    assert only_problem(text) == "test.yaml:1: at 'jobs': the configuration is empty (it needs at least one job)"


@pytest.mark.parametrize("text,line", [("timezone: UTC\n", 1), ("timezone: UTC\njobs: {}\n", 2)])
def test_a_config_without_jobs_is_rejected_at_its_jobs_key(text, line):
    assert only_problem(text) == (f"test.yaml:{line}: at 'jobs': no jobs are defined "
                                  "(a configuration needs at least one job)")


def test_validate_of_an_empty_file_exits_2_with_one_line_per_problem(tmp_path, capsys):
    code, err = validate(tmp_path, "# nothing yet\n", capsys)
    assert code == 2 and "Traceback" not in err and "valid (0 jobs" not in err
    assert f"  - {tmp_path / 'schedules.yaml'}:1: at 'jobs': the configuration is empty" in err


# -- interpolation ----------------------------------------------------------------


def test_an_unclosed_variable_is_an_error_not_a_literal_host():
    problem = only_problem(GOOD.replace("host: db", "host: ${NO_SUCH_VAR"))
    assert problem.startswith("test.yaml:5: at 'databases.app.host': '${' is not closed by '}'")


@pytest.mark.parametrize("form", [
    "${DBHOST", "${DBHOST:-db", "${}", "${1HOST}", "${DBHOST:?unset}", "${DBHOST-db}", "${DBHOST:-${OTHER}}",
    "$DBHOST", "pg-$DBHOST",
])
def test_every_malformed_variable_form_is_an_error_at_its_line(form):
    problem = only_problem(GOOD.replace("host: db", f'host: "{form}"'), env={"DBHOST": "pg.internal"})
    assert problem.startswith("test.yaml:5: at 'databases.app.host': ")
    assert "${VAR} or ${VAR:-default}" in problem


@pytest.mark.parametrize("text,value", [("$$DBHOST", "$DBHOST"), ("db$", "db$"), ("db$1", "db$1"),
                                        ("${DBHOST}", "pg.internal"), ("${NOPE:-db}x", "dbx")])
def test_well_formed_variables_and_lone_dollars_still_load(text, value):
    config = parse_config(GOOD.replace("host: db", f'host: "{text}"'), "test.yaml", env={"DBHOST": "pg.internal"})
    assert config.databases["app"].host == value


def test_a_malformed_variable_inside_a_secret_never_shows_the_secret():
    problem = only_problem(GOOD.replace("password: s3cr3t-value", 'password: "s3cr3t${half"'))
    assert problem.startswith("test.yaml:6: at 'databases.app.password': ") and "s3cr3t" not in problem
    problem = only_problem(GOOD.replace("password: s3cr3t-value", 'password: "s3cr3t$half"'))
    assert "s3cr3t" not in problem and "half" not in problem


def test_problems_in_values_and_in_the_model_are_listed_together():
    text = GOOD.replace("host: db", "host: ${NO_SUCH_VAR").replace("listen: 127.0.0.1:9187", "listen: nope")
    problems = problems_of(text)
    assert [p.split(": at ")[1].split("'")[1] for p in problems] == ["databases.app.host", "daemon.listen"]


# -- host:port fields ----------------------------------------------------------


@pytest.mark.parametrize("listen", ["not-a-port", "host:0", "host:65536", "host:", ":", "::1:9187", "a b:80", "host:80x"])
def test_daemon_listen_must_be_host_and_port(listen):
    problem = only_problem(GOOD.replace("listen: 127.0.0.1:9187", f'listen: "{listen}"'))
    assert problem.startswith("test.yaml:8: at 'daemon.listen': ") and "host:port" in problem


@pytest.mark.parametrize("listen", ["0.0.0.0:9187", ":9187", "[::1]:9187", "localhost:80"])
def test_daemon_listen_accepts_what_the_daemon_can_bind(listen):
    assert parse_config(GOOD.replace("listen: 127.0.0.1:9187", f'listen: "{listen}"'), "t", env={}).daemon.listen == listen


@pytest.mark.parametrize("host", ["db:5432", "db:"])
def test_a_database_host_with_a_port_in_it_is_rejected(host):
    problem = only_problem(GOOD.replace("host: db", f'host: "{host}"'))
    assert problem.startswith("test.yaml:5: at 'databases.app.host': ") and "port" in problem


@pytest.mark.parametrize("url", ["minio:9000", "ftp://minio", "http://", "http://minio:99999", "http://minio:port"])
def test_an_s3_endpoint_must_be_an_http_url_with_a_valid_port(url):
    text = GOOD.replace('local: {url: "file:///var/backups"}', f'local: {{url: "s3://b/p", endpoint_url: "{url}"}}')
    assert only_problem(text).startswith("test.yaml:2: at 'storage.local.endpoint_url': ")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "hooks.example.com/tok-123secret", "http://:80/tok-123secret"])
def test_a_notify_url_must_be_http_and_is_never_shown(url):
    problem = only_problem(GOOD + f'notify:\n  targets: [{{type: webhook, url: "{url}"}}]\n')
    assert problem.startswith("test.yaml:12: at 'notify.targets[0].url': ") and "http" in problem
    assert url not in problem and "secret" not in problem.replace("the value is not shown", "")


# -- S3 keys ----------------------------------------------------------------------

S3 = GOOD.replace('local: {url: "file:///var/backups"}',
                  "local:\n    url: s3://bucket/p\n    access_key_id: AKIDEXAMPLE\n    secret_access_key: wJalrXUtnFEMI")


@pytest.mark.parametrize("value", ['""', "", "~", "null", "${NO_KEY:-}"])
def test_an_empty_or_null_s3_key_is_an_error_not_the_aws_chain(value):
    problem = only_problem(S3.replace("access_key_id: AKIDEXAMPLE", f"access_key_id: {value}"))
    assert problem.startswith("test.yaml:4: at 'storage.local.access_key_id': ")
    assert "empty" in problem and "wJalrXUtnFEMI" not in problem


def test_an_s3_key_without_its_pair_is_an_error():
    problem = only_problem(S3.replace("    access_key_id: AKIDEXAMPLE\n", ""))
    assert problem.startswith("test.yaml:2: at 'storage.local': secret_access_key is given without access_key_id")
    problem = only_problem(S3.replace("    secret_access_key: wJalrXUtnFEMI", "    session_token: tok-value")
                           .replace("    access_key_id: AKIDEXAMPLE\n", ""))
    assert "session_token is given without access_key_id" in problem and "tok-value" not in problem


def test_both_s3_keys_or_neither_load():
    assert parse_config(S3, "t", env={}).storage["local"].access_key_id.get_secret_value() == "AKIDEXAMPLE"
    plain = S3.replace("    access_key_id: AKIDEXAMPLE\n    secret_access_key: wJalrXUtnFEMI", "")
    assert parse_config(plain, "t", env={}).storage["local"].access_key_id is None


@pytest.mark.parametrize("value", ['""', "~"])
def test_an_empty_secret_file_setting_is_one_problem_not_also_an_unknown_key(value):
    text = S3.replace("access_key_id: AKIDEXAMPLE", f"access_key_id_file: {value}")
    problem = only_problem(text)
    assert problem.startswith("test.yaml:4: at 'storage.local.access_key_id_file': ")


def test_a_problem_with_a_secret_read_from_a_file_names_the_file_setting_line(tmp_path):
    (tmp_path / "key").write_text("AKIDFROMFILE\n")
    text = S3.replace("access_key_id: AKIDEXAMPLE", f"access_key_id_file: {tmp_path}/key").replace(
        "    secret_access_key: wJalrXUtnFEMI\n", "")
    problem = only_problem(text)
    assert problem.startswith("test.yaml:2: at 'storage.local': access_key_id is given without secret_access_key")
    assert "AKIDFROMFILE" not in problem


# -- empty strings and nulls elsewhere ------------------------------------------------


@pytest.mark.parametrize("old,new,path", [
    ("password: s3cr3t-value", 'password: ""', "databases.app.password"),
    ("host: db", 'host: ""', "databases.app.host"),
    ("host: db", 'host: db\n    user: ""', "databases.app.user"),
    ("host: db", 'host: db\n    dbname: ""', "databases.app.dbname"),
    ('url: "file:///var/backups"', 'url: ""', "storage.local.url"),
    ("storage: local}", 'storage: ""}', "jobs.backup.storage"),
    ("databases: [app]", 'databases: [""]', "jobs.backup.databases[0]"),
    ("listen: 127.0.0.1:9187", 'listen: 127.0.0.1:9187\n  state_dir: ""', "daemon.state_dir"),
    ("storage:\n", 'timezone: ""\nstorage:\n', "timezone"),
])
def test_an_empty_string_is_rejected_wherever_a_value_is_expected(old, new, path):
    problem = only_problem(GOOD.replace(old, new))
    assert f"at '{path}': must not be empty" in problem and "s3cr3t" not in problem


def test_an_empty_path_in_a_snapshot_is_rejected_not_read_as_the_current_directory():
    text = GOOD + '  snap: {type: config_snapshot, schedule: "@daily", storage: local, paths: ["/srv", ""]}\n'
    assert "at 'jobs.snap.paths[1]': must not be empty" in only_problem(text)


def test_a_label_value_may_be_empty():
    text = GOOD + '  drill: {type: restore_drill, schedule: "@daily", databases: [app], storage: local, labels: {a: ""}}\n'
    assert parse_config(text, "t", env={}).jobs["drill"].labels == {"a": ""}


@pytest.mark.parametrize("old,new,path", [
    ("password: s3cr3t-value", "password:", "databases.app.password"),
    ("host: db", "host: db\n    dbname: ~", "databases.app.dbname"),
    ('storage: local}', "storage: local, timeout: null}", "jobs.backup.timeout"),
    ("daemon:\n  listen: 127.0.0.1:9187\n", "daemon:\n", "daemon"),
    ('schedule: "15 3 * * *"', "schedule: ~", "jobs.backup.schedule"),
])
def test_a_null_value_is_an_error_not_a_silent_default(old, new, path):
    assert f"at '{path}': empty value" in only_problem(GOOD.replace(old, new))


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/b", "../up", ".hidden", "my db", '""'])
def test_database_storage_and_job_names_are_plain_names(name):
    text = GOOD.replace("  app:\n", f"  {name}:\n").replace("databases: [app]", f"databases: [{name}]")
    assert any("at 'databases." in p and ("not a valid name" in p or "must not be empty" in p)
               for p in problems_of(text))


def test_the_compose_project_of_a_snapshot_is_a_plain_name():
    text = GOOD + '  snap: {type: config_snapshot, schedule: "@daily", storage: local, compose_project: "../x"}\n'
    assert "at 'jobs.snap.compose_project': '../x' is not a valid name" in only_problem(text)


# -- top level, YAML syntax, job type --------------------------------------------------


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"), ("\n\njust text\n", "a single value")])
def test_a_top_level_list_or_scalar_names_its_line(text, kind):
    problem = only_problem(text)
    line = 1 if kind == "a list" else 3
    assert problem.startswith(f"test.yaml:{line}: at '(top level)': the configuration must be a mapping")
    assert problem.endswith(f"not {kind}")


def test_a_yaml_syntax_error_points_at_the_mistake_and_says_where_it_was_noticed():
    with pytest.raises(ConfigError) as info:
        parse_config("jobs:\n  a: [1, 2\n\n\nstorage: {}\n", "bad.yaml", env={})
    [problem] = info.value.problems
    assert problem.startswith("bad.yaml:2: at 'jobs.a': YAML syntax error: expected ',' or ']'")
    assert "(line 5, column 8)" in problem and "flow sequence that starts at line 2" in problem


def test_a_yaml_indentation_error_points_at_the_bad_line_and_the_mapping_it_breaks():
    with pytest.raises(ConfigError) as info:
        parse_config("jobs:\n  a: 1\n b: 2\n", "bad.yaml", env={})
    [problem] = info.value.problems
    assert problem.startswith("bad.yaml:3: at 'jobs.b': YAML syntax error: ")
    assert "block mapping that starts at line 1" in problem


def test_an_unclosed_quote_is_reported_where_it_opens_with_its_key_path():
    with pytest.raises(ConfigError) as info:
        parse_config('storage:\n  s3:\n    url: "s3://x\n\njobs: {}\n', "bad.yaml", env={})
    [problem] = info.value.problems
    assert problem.startswith("bad.yaml:3: at 'storage.s3.url': YAML syntax error: found unexpected end of stream")
    assert "quoted scalar that starts at line 3" in problem


def test_a_yaml_error_is_printed_once_by_validate(tmp_path, capsys):
    code, err = validate(tmp_path, "jobs: [1, 2\n", capsys)
    assert code == 2 and err.count("YAML syntax error") == 2  # the summary line, then the problem
    assert err.splitlines()[0] == f"Error: {tmp_path / 'schedules.yaml'}: YAML syntax error"


def test_an_unknown_job_type_is_reported_at_its_type_key_and_line():
    text = GOOD + "  x:\n    schedule: '@daily'\n    type: teleport\n"
    assert only_problem(text).startswith("test.yaml:13: at 'jobs.x.type': unknown job type 'teleport'")


def test_a_job_without_a_type_is_reported_at_its_type_key():
    text = GOOD + "  x:\n    schedule: '@daily'\n"
    assert only_problem(text).startswith("test.yaml:11: at 'jobs.x.type': required key is missing (the job type")


@pytest.mark.parametrize("value,message", [
    ("!foo x", "unsupported YAML tag !foo"), ("!!int abc", "not a valid !!int value"),
    ("!!timestamp 2020-99-99", "not a valid !!timestamp value"), ("!!python/name:os.system x", "unsupported YAML tag"),
])
def test_values_no_yaml_type_accepts_are_problems_not_crashes(value, message):
    assert only_problem(GOOD.replace("host: db", f"host: {value}")) .startswith(
        f"test.yaml:5: at 'databases.app.host': {message}")


def test_an_alias_to_its_own_container_is_a_problem_not_a_crash():
    text = GOOD + "  x: {type: image_update, schedule: '@daily', images: &loop [postgres, *loop]}\n"
    assert only_problem(text).startswith("test.yaml:11: at 'jobs.x.images[1]': an alias refers to a collection")


# -- numbers out of range ---------------------------------------------------------------


@pytest.mark.parametrize("setting,path", [
    ("timeout: .inf", "jobs.backup.timeout"), ("timeout: .nan", "jobs.backup.timeout"),
    ("timeout: 99999999999d", "jobs.backup.timeout"), ("timeout: 1e400", "jobs.backup.timeout"),
    ("suspicious_drop: .nan", "jobs.backup.suspicious_drop"), ("compression_level: 1e9", "jobs.backup.compression_level"),
])
def test_infinite_nan_and_huge_numbers_are_rejected(setting, path):
    problem = only_problem(GOOD.replace("storage: local}", f"storage: local, {setting}}}"))
    assert f"at '{path}'" in problem


@pytest.mark.parametrize("setting,path", [("memory: -1", "memory"), ("memory: 1k", "memory"),
                                          ("cpus: .inf", "cpus"), ("cpus: 100000", "cpus")])
def test_restore_drill_limits_docker_cannot_take_are_rejected(setting, path):
    text = GOOD + f'  drill: {{type: restore_drill, schedule: "@daily", databases: [app], storage: local, {setting}}}\n'
    assert f"at 'jobs.drill.{path}'" in only_problem(text)


# -- image templates ---------------------------------------------------------------------


@pytest.mark.parametrize("image", ["postgres:{version}", "postgres:{major", "postgres:{}", "postgres:{major!r}",
                                   "postgres:{major.real}", "Not An Image:{major}"])
def test_an_image_template_with_another_placeholder_is_rejected_before_a_drill_formats_it(image):
    text = GOOD + f'  drill: {{type: restore_drill, schedule: "@daily", databases: [app], storage: local, image: "{image}"}}\n'
    assert only_problem(text).startswith("test.yaml:11: at 'jobs.drill.image': ")
    text = GOOD.replace("host: db", f'host: db\n    client: {{image: "{image}"}}')
    assert only_problem(text).startswith("test.yaml:6: at 'databases.app.client.image': ")


@pytest.mark.parametrize("image", ["postgres:{major}", "ghcr.io/acme/pg:{major}-alpine", "127.0.0.1:5555/pg:16"])
def test_image_templates_with_major_or_none_load(image):
    text = GOOD + f'  drill: {{type: restore_drill, schedule: "@daily", databases: [app], storage: local, image: "{image}"}}\n'
    assert parse_config(text, "t", env={}).jobs["drill"].image == image

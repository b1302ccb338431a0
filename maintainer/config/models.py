"""The typed model of schedules.yaml: top-level sections and their entries."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from maintainer.config.jobs import JobSpec, Strict
from maintainer.config.types import (
    PENDING_SECRET,
    Duration,
    EndpointUrl,
    Host,
    ImageTemplate,
    ListenAddress,
    Name,
    Region,
    http_url,  # the webhook/ping rule, shared with SecretHttpUrl
)
from maintainer.errors import ConfigError

if TYPE_CHECKING:
    from maintainer.crypto import Identity, Recipient


class EncryptionSpec(Strict):
    """Encryption at rest in the age format: what is stored here can be read only
    with an identity (a private key) of one of the recipients. Writing needs only
    the recipients; restore, restore drills and snapshot restore need an
    identity. Identities are read only from files, and never shown. See
    docs/encryption.md.
    """

    recipients: list[str] = Field(default_factory=list, description=(
        "public keys to encrypt to, each `age1...` or `ssh-ed25519 AAAA...`; several are allowed (a team "
        "key and an offline recovery key)"))
    recipients_file: str | None = Field(None, description=(
        "a file of more recipients, one a line, `#` starts a comment (as `age -R` reads)"))
    identity_file: str | None = Field(None, description=(
        "a file of one or more `AGE-SECRET-KEY-1...` lines (as `age-keygen` writes), or an unencrypted "
        "OpenSSH ed25519 key; every key in it is tried. A missing file is reported only where it is used "
        "(and by `validate --strict`): a backup-only container does not need it"))
    identity_files: list[str] = Field(default_factory=list, description=(
        "several identity files instead of `identity_file`, e.g. one Docker secret per key while rotating"))

    # The directory relative file names are read from: the config file's (set by the loader).
    _base_dir: Path | None = PrivateAttr(None)

    @field_validator("recipients")
    @classmethod
    def _parse_recipients(cls, v: list[str]) -> list[str]:
        # Lazy: cryptography (~20 ms, ~10 MB RSS) loads only when a storage encrypts.
        from maintainer.crypto import KeyFormatError, parse_recipient

        for i, text in enumerate(v):
            try:
                parse_recipient(text)
            except KeyFormatError as exc:
                raise ValueError(f"recipients[{i}]: {exc.reason}") from None
        return v

    @model_validator(mode="after")
    def _needs(self) -> "EncryptionSpec":
        if not self.recipients and self.recipients_file is None:
            raise ValueError("encryption needs at least one recipient: give recipients or recipients_file")
        if self.identity_file is not None and self.identity_files:
            raise ValueError("give identity_file or identity_files, not both")
        return self

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() or self._base_dir is None else self._base_dir / path

    def recipients_path(self) -> Path | None:
        return self._path(self.recipients_file) if self.recipients_file is not None else None

    def identity_paths(self) -> list[Path]:
        names = [self.identity_file] if self.identity_file is not None else self.identity_files
        return [self._path(name) for name in names]

    def recipient_keys(self) -> list[Recipient]:
        """Every recipient, inline ones first, each once.

        The recipients file is read now. Raises KeyFormatError (an EncryptionError) for a bad one.
        """
        # Lazy: cryptography (~20 ms, ~10 MB RSS) loads only when a storage encrypts.
        from maintainer.crypto import parse_recipient, read_recipients_file

        keys = [parse_recipient(text) for text in self.recipients]
        path = self.recipients_path()
        if path is not None:
            keys += read_recipients_file(path, self.recipients_file)
        return list(dict.fromkeys(keys))

    def identity_keys(self) -> list[Identity]:
        """Every identity of every identity file, read now,
        so a rotated key is picked up without a restart.

        Raises ConfigError when none is configured or a file cannot be read, and
        KeyFormatError (an EncryptionError) when a file is malformed.
        """
        # Lazy: cryptography (~20 ms, ~10 MB RSS) loads only when a storage encrypts.
        from maintainer.crypto import KeyFileUnreadable, read_identity_file

        names = [self.identity_file] if self.identity_file is not None else self.identity_files
        if not names:
            raise ConfigError("the storage is encrypted and no identity is configured to decrypt it",
                              hint="set encryption.identity_file to the file of the private key (age-keygen format)")
        identities = []
        for name, path in zip(names, self.identity_paths()):
            try:
                identities += read_identity_file(path, name)
            except KeyFileUnreadable as exc:
                raise ConfigError(exc.message, hint="mount the identity file where restore runs, or point "
                                                    "encryption.identity_file elsewhere") from None
        return identities


class StorageSpec(Strict):
    """A backup destination chosen by URL: file:///path or s3://bucket/prefix."""

    url: str = Field(description="file:///absolute/path or s3://bucket[/prefix]")
    endpoint_url: EndpointUrl | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, R2, B2)")
    region: Region | None = Field(None, description="S3 region (default: us-east-1; auto for R2)")
    path_style: bool = Field(False, description="path-style addressing, needed by most self-hosted S3 servers")
    access_key_id: SecretStr | None = Field(None, description=(
        "S3 access key; given with secret_access_key, or neither for the standard AWS credential chain "
        "(environment, ~/.aws, instance role)"))
    secret_access_key: SecretStr | None = Field(None, description="the secret of access_key_id")
    session_token: SecretStr | None = Field(None, description=(
        "session token of temporary credentials (AWS STS), with access_key_id and secret_access_key"))
    part_size: int = Field(5 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024,
                           description="size of an upload's first S3 parts in bytes (5 MiB to 512 MiB); memory "
                                       "is two parts. Parts double every 2,000, so an object can reach 31 times "
                                       "2,000 first parts (about 300 GiB at the default)")
    encryption: EncryptionSpec | None = Field(None, description="not set: stored unencrypted")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not (v.startswith("file://") or v.startswith("s3://")):
            raise ValueError(f"'{v}' is not a storage URL: use file:///absolute/path or s3://bucket/prefix")
        if v.startswith("file://") and not v[len("file://"):].startswith("/"):
            raise ValueError(f"'{v}': a file URL needs an absolute path, e.g. file:///var/lib/maintainer/backups")
        if v.startswith("s3://") and not v[len("s3://"):].split("/")[0]:
            raise ValueError(f"'{v}': an s3 URL needs a bucket, e.g. s3://my-bucket/backups")
        return v

    @model_validator(mode="after")
    def _key_pairs(self) -> "StorageSpec":
        """An access key without its secret (or the reverse) is a mistake, never "use the AWS chain"."""
        if (self.access_key_id is None) != (self.secret_access_key is None):
            given, missing = (("access_key_id", "secret_access_key") if self.access_key_id is not None
                              else ("secret_access_key", "access_key_id"))
            raise ValueError(f"{given} is given without {missing}: give both (or their _file forms), "
                             "or neither to use the standard AWS credential chain")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token is given without access_key_id and secret_access_key")
        return self


class ClientSpec(Strict):
    """How to run pg_dump when the local client is older than the server."""

    mode: Literal["auto", "local", "container", "exec"] = Field(
        "auto", description="auto: local client if new enough, else a container; local/container/exec force one way")
    image: ImageTemplate = Field("postgres:{major}", description="image template for the container client")
    network: str | None = Field(None, description="docker network of the database, for the container client")
    container: str | None = Field(None, description="the database container, for docker exec")
    host: Host | None = Field(None, description="the server's host as the client sees it (default: the database's host; exec: 127.0.0.1)")
    port: int | None = Field(None, ge=1, le=65535, description="the server's port as the client sees it (default: the database's port; exec: 5432)")


class DatabaseSpec(Strict):
    """A PostgreSQL database to back up or restore."""

    host: Host = Field("localhost", description="the server's host name, address or socket directory")
    port: int = Field(5432, ge=1, le=65535, description="the server's port")
    user: str = Field("postgres", description="the role to connect as")
    password: SecretStr | None = Field(None, description=(
        "the role's password; when not set, libpq's own sources apply (PGPASSWORD, ~/.pgpass)"))
    dbname: str | None = Field(None, description="the database's name on the server (default: the entry's name)")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq's sslmode for every connection and client tool")
    client: ClientSpec = Field(default_factory=ClientSpec, description="the client tools pg_dump and pg_dumpall")
    max_backup_age: Duration = Field(timedelta(hours=26), description="health fails when the newest backup is older")
    max_drill_age: Duration = Field(timedelta(days=8), description="health fails when the newest passed drill is older")

    def conninfo(self, name: str, dbname: str | None = None, *, with_password: bool = True) -> str:
        """A libpq key=value string; the password only when asked for."""
        parts = {
            "host": self.host, "port": str(self.port), "user": self.user,
            "dbname": dbname or self.dbname or name, "sslmode": self.sslmode,
            "connect_timeout": "10", "application_name": "maintainer",
        }
        if with_password and self.password is not None:
            parts["password"] = self.password.get_secret_value()
        return " ".join(f"{k}='{_escape(v)}'" for k, v in parts.items())

    def display(self, name: str) -> str:
        """user@host:port/dbname, never with a password."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname or name}"


def check_apprise_urls(value: SecretStr) -> None:
    """Every URL in ``value`` must be one Apprise supports; ValueError (never
    quoting the URL, which holds a token) otherwise. A secret whose file could
    not be read is checked where it is used."""
    text = value.get_secret_value()
    if text.startswith(PENDING_SECRET):
        return
    # apprise costs 0.15 s to import: only a config with an apprise target pays it.
    import apprise

    parse_urls = getattr(apprise.utils, "parse_urls", None) or apprise.utils.parse.parse_urls  # moved in apprise 1.9
    urls = parse_urls(text)
    if not urls:
        raise ValueError("expected one or more Apprise URLs such as slack://... or tgram://... "
                         "(the value is not shown: it may hold a token)")
    for index, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            known = f"'{scheme}://' is not a service Apprise knows" if scheme and "/" not in scheme else "it is not a URL"
            raise ValueError(f"Apprise URL {index}: {known}, or its options are wrong "
                             "(the value is not shown: it may hold a token)")


def databases_of(job: Any) -> list[str]:
    """The database entries a job works on: its ``databases`` list, or its single
    ``database`` (wal_archive and pg_basebackup: one server each); none for the
    job types that work on no database (docker_prune, config_snapshot...)."""
    many = getattr(job, "databases", None)
    if many is not None:
        return list(many)
    one = getattr(job, "database", None)
    return [one] if one is not None else []


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("'", "\\'")


class NotifyTarget(Strict):
    """Where an alert goes."""

    type: Literal["webhook", "ping", "apprise"] = Field(description=(
        "webhook: JSON POST; ping: healthchecks.io-style URL; apprise: an Apprise URL (slack://, tgram://, "
        "mailtos://, ntfys://, matrixs://, discord://... every service Apprise supports)"))
    url: SecretStr = Field(description=(
        "webhook and ping: the http(s) URL; apprise: one or more Apprise URLs separated by spaces or commas. "
        "URLs hold tokens, so they are secrets: give them with url_file"))
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers sent with each request "
                                                                      "(webhook and ping)")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: SecretStr, info: ValidationInfo) -> SecretStr:
        # ``type`` is declared first, so it is known here (absent only when it was itself invalid).
        if info.data.get("type") == "apprise":
            check_apprise_urls(v)
            return v
        return http_url(v)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if v and info.data.get("type") == "apprise":
            raise ValueError("headers apply to webhook and ping targets; an Apprise URL carries its own options")
        return v


class NotifySpec(Strict):
    """Alerts. Failures, suspicious backups and failed drills always notify; a
    notifier that is down is retried and logged, and never fails the job."""

    on_success: bool = Field(False, description="also send webhooks for successful runs (pings go for every run)")
    retries: int = Field(3, ge=0, le=10, description="attempts after a failed delivery, with a growing pause")
    timeout: Duration = Field(timedelta(seconds=10), description="time limit of each delivery attempt")
    targets: list[NotifyTarget] = Field(default_factory=list, description="where alerts go; none: no alerts are sent")


class BasicAuthSpec(Strict):
    """HTTP basic authentication for the status page (``/health`` and ``/metrics``
    stay open for the health check and Prometheus)."""

    username: str = Field(description="the user name to give")
    password: SecretStr = Field(description="the password; give it with password_file (a Docker secret)")


class StatusPageSpec(Strict):
    """The read-only HTML status page at ``GET /`` on ``daemon.listen``."""

    enabled: bool = Field(True, description="serve the page; false: / answers 404")
    basic_auth: BasicAuthSpec | None = Field(None, description=(
        "not set: the page has no authentication (it says so) and belongs on an internal network"))


class DaemonSpec(Strict):
    """The always-on ``maintainer daemon``: how it schedules runs, and what it serves."""

    state_dir: str = Field(default_factory=lambda: os.environ.get("MAINTAINER_STATE_DIR", "/var/lib/maintainer"),
                           description="run history and other state (a volume)",
                           json_schema_extra={"shown_default": "$MAINTAINER_STATE_DIR, else /var/lib/maintainer"})
    listen: ListenAddress = Field("127.0.0.1:9187", description="host:port of the status page, /health and /metrics")
    max_concurrent_jobs: int = Field(2, ge=1, description="runs at the same time at most; more wait for a free slot")
    jitter: Duration = Field(timedelta(0), description="random delay added to each start")
    misfire_grace: Duration = Field(timedelta(minutes=30), description="a run missed by less than this still runs, once")
    shutdown_grace: Duration = Field(timedelta(seconds=60), description="time running jobs get to finish on SIGTERM")
    failure_threshold: int = Field(3, ge=1, description="health fails when a job failed this many runs in a row")
    status_page: StatusPageSpec = Field(default_factory=StatusPageSpec, description="the status page at GET /")


class Config(Strict):
    """The file's sections; only jobs is required."""

    timezone: str = Field("UTC", description="the time zone cron schedules are read in, e.g. UTC or Europe/Berlin")
    storage: dict[Name, StorageSpec] = Field(default_factory=dict, description="where backups and snapshots go, by name")
    databases: dict[Name, DatabaseSpec] = Field(default_factory=dict, description="PostgreSQL databases, by name")
    notify: NotifySpec = Field(default_factory=NotifySpec, description="alerts")
    daemon: DaemonSpec = Field(default_factory=DaemonSpec, description="the always-on maintainer daemon")
    # An empty jobs section is the loader's error (it names the file); the model allows it.
    jobs: dict[Name, JobSpec] = Field(default_factory=dict, description="what runs when, by name",
                                      json_schema_extra={"shown_default": "required: at least one job"})

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{v}' is not a known time zone (e.g. UTC, Europe/Berlin)") from None
        return v

    # Set by the loader: the file it came from, for relative paths and messages.
    _source: str | None = PrivateAttr(None)
    # Set by the loader: secret files that could not be read (each names file and line).
    _secret_warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def secret_warnings(self) -> list[str]:
        return self._secret_warnings

    @property
    def source(self) -> str | None:
        return self._source

    def database(self, name: str) -> DatabaseSpec:
        return self.databases[name]

    # Questions about the jobs, answered here once rather than by comparing type
    # strings wherever they are asked.

    def jobs_of_type(self, type_: str) -> dict[str, Any]:
        """The jobs of one type (``pg_backup``, ``config_snapshot``...), by name, in file order."""
        return {name: spec for name, spec in self.jobs.items() if spec.type == type_}

    def jobs_covering(self, database: str, type_: str) -> list[str]:
        """Names of the ``type_`` jobs that work on ``database``, in file order: those whose
        ``databases`` include it (pg_backup, restore_drill), or whose single ``database``
        is it (wal_archive, pg_basebackup)."""
        return [name for name, spec in self.jobs_of_type(type_).items() if database in databases_of(spec)]

    def pitr_drills_covering(self, database: str) -> list[str]:
        """Names of the restore_drill jobs with ``mode: pitr`` that drill ``database``."""
        return [name for name in self.jobs_covering(database, "restore_drill") if self.jobs[name].mode == "pitr"]

    def backup_storage_of(self, database: str) -> str | None:
        """The storage the first pg_backup job of ``database`` writes to."""
        names = self.jobs_covering(database, "pg_backup")
        return self.jobs[names[0]].storage if names else None

    def backup_job_into(self, database: str, storage: str) -> str | None:
        """The name of a pg_backup job that backs ``database`` up into ``storage``."""
        return next((name for name in self.jobs_covering(database, "pg_backup")
                     if self.jobs[name].storage == storage), None)

    def backup_storages(self) -> list[str]:
        """Every storage a pg_backup job writes to, in file order, each once."""
        return list(dict.fromkeys(spec.storage for spec in self.jobs_of_type("pg_backup").values()))

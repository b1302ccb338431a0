"""s3://bucket/prefix storage through boto3, for AWS and S3-compatible stores.

Uploads stream in parts (see s3_writer): one part buffer is filled while a background thread
sends the other, so memory stays at two parts whatever the object's size.
Small objects go up in one PUT. A failed or interrupted upload
is aborted on the server, so no partial object ever appears.

A multipart upload has a small hidden record beside its key,
``.<name>.partial-<token>``, that names the upload and the process running it
and is written again every HEARTBEAT while parts go up. A process killed
mid-upload leaves both behind; a clean-up on the same machine (and PID
namespace) sees that the process is gone and aborts the upload at once. It never
aborts an upload whose process still runs; an upload it cannot check (run from
elsewhere, or without a record) it aborts only once the upload has shown no life
for ``older_than``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from maintainer.errors import ObjectNotFound, StorageError
from maintainer.storage import owner as owners
from maintainer.storage.base import ABANDONED_AFTER, ObjectInfo, Storage, Writer, check_key, is_partial
from maintainer.storage.s3_writer import S3Writer

if TYPE_CHECKING:
    from maintainer.config.models import StorageSpec

_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
           "ExpiredToken", "AuthorizationHeaderMalformed", "403", "Forbidden"}
def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3Storage(Storage):
    def __init__(self, name: str, spec: "StorageSpec", *, client: Any | None = None):
        self.bucket, self.prefix = parse_s3_url(spec.url)
        super().__init__(name, spec.url.rstrip("/"))
        self.part_size = spec.part_size
        self.endpoint = spec.endpoint_url
        if client is None:
            session_kwargs: dict[str, Any] = {}
            if spec.access_key_id is not None:
                session_kwargs["aws_access_key_id"] = spec.access_key_id.get_secret_value()
            if spec.secret_access_key is not None:
                session_kwargs["aws_secret_access_key"] = spec.secret_access_key.get_secret_value()
            if spec.session_token is not None:
                session_kwargs["aws_session_token"] = spec.session_token.get_secret_value()
            boto_config = BotoConfig(
                s3={"addressing_style": "path" if spec.path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10, read_timeout=120,
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
            )
            try:
                client = boto3.session.Session(**session_kwargs).client(
                    "s3", endpoint_url=spec.endpoint_url, region_name=spec.region or "us-east-1", config=boto_config)
            except (BotoCoreError, ValueError) as exc:
                raise StorageError(f"{self.url}: cannot set up S3 client: {exc}") from None
        self.client = client

    # -- helpers ---------------------------------------------------------
    def full_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def error(self, action: str, key: str | None, exc: Exception) -> StorageError:
        """Translate a boto error into one clear line."""
        where = f"{self.url}: {action} {key}" if key else f"{self.url}: {action}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket '{self.bucket}' does not exist")
            if code in _MISSING and key:
                return ObjectNotFound(f"{self.url}: {key} does not exist")
            if code in _DENIED or status == 403:
                return StorageError(f"{where}: access denied by S3 ({code or status}); check the access key and secret",
                                    hint="credentials come from access_key_id/secret_access_key(_file) or the AWS chain")
            return StorageError(f"{where}: S3 error {code or status}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": "))
        if isinstance(exc, NoCredentialsError):
            return StorageError(f"{where}: no S3 credentials found",
                                hint="set access_key_id/secret_access_key (or *_file) in the storage entry, or AWS_* variables")
        if isinstance(exc, EndpointConnectionError) or "Could not connect" in str(exc) or "Connect timeout" in str(exc):
            return StorageError(f"{where}: cannot reach S3 endpoint {self.endpoint or 'AWS'}")
        return StorageError(f"{where}: {type(exc).__name__}: {exc}")

    # -- interface -------------------------------------------------------
    def open_writer(self, key: str) -> Writer:
        return S3Writer(self, key)

    def put(self, key: str, source: BinaryIO | bytes) -> ObjectInfo:
        """Small bytes (manifests, globals, records) go up in one PUT without a part buffer."""
        if isinstance(source, (bytes, bytearray, memoryview)) and len(source) < self.part_size:
            body = bytearray(source)
            self.put_whole(key, body)
            return ObjectInfo(key, len(body), datetime.now(timezone.utc))
        return super().put(key, source)

    def put_whole(self, key: str, body: bytearray) -> None:
        """One PUT of the whole object (a bytearray: botocore copies a ``bytes`` body once more)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("cannot write", key, exc) from None

    def open(self, key: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self.error("cannot read", key, exc) from None
        return _Body(response["Body"], self, key)

    def stat(self, key: str) -> ObjectInfo:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                # HEAD has no body: a missing bucket also answers 404. Tell them apart.
                self._check_bucket()
                raise ObjectNotFound(f"{self.url}: {key} does not exist") from None
            raise self.error("cannot stat", key, exc) from None
        except BotoCoreError as exc:
            raise self.error("cannot stat", key, exc) from None
        return ObjectInfo(key, int(head["ContentLength"]), head["LastModified"].astimezone(timezone.utc))

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"{self.url}: bucket '{self.bucket}' does not exist") from None
            raise self.error("cannot access bucket", None, exc) from None
        except BotoCoreError as exc:
            raise self.error("cannot access bucket", None, exc) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = self.prefix + prefix
        found: list[ObjectInfo] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    if is_partial(obj["Key"].rsplit("/", 1)[-1]):
                        continue  # the record of an upload under way, not an object
                    found.append(ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]),
                                            obj["LastModified"].astimezone(timezone.utc)))
        except (ClientError, BotoCoreError) as exc:
            raise self.error("cannot list", prefix or "/", exc) from None
        found.sort(key=lambda o: o.key)
        return iter(found)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        except (ClientError, BotoCoreError) as exc:
            err = self.error("cannot delete", key, exc)
            if not isinstance(err, ObjectNotFound):
                raise err from None

    def cleanup_incomplete(self, prefix: str = "", older_than: timedelta = ABANDONED_AFTER) -> list[str]:
        cutoff = datetime.now(timezone.utc) - older_than
        removed: list[str] = []
        try:
            # Uploads first, records second: a record written in between names an
            # upload not in the list, and is judged as a record of its own.
            uploads = [upload for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix) for upload in page.get("Uploads", [])]
            records = self._upload_records(prefix)
            for upload in uploads:
                record = records.pop(upload["UploadId"], None)
                seen = max([upload["Initiated"]] + ([record.modified] if record else []))
                if _abandoned(record.owner if record else None, seen, cutoff):
                    self._abort_upload(upload["Key"], upload["UploadId"])
                    if record:
                        self.client.delete_object(Bucket=self.bucket, Key=record.key)
                    removed.append(upload["Key"][len(self.prefix):])
            for record in records.values():  # their upload ended, but the writer did not remove them
                if _abandoned(record.owner, record.modified, cutoff):
                    self.client.delete_object(Bucket=self.bucket, Key=record.key)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("cannot clean up uploads under", prefix or "/", exc) from None
        return removed

    def _upload_records(self, prefix: str) -> dict[str, _UploadRecord]:
        """The records of uploads under ``prefix``, by upload id (a record that
        cannot be read stands for an unknown upload of unknown owner)."""
        records: dict[str, _UploadRecord] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                if not is_partial(obj["Key"].rsplit("/", 1)[-1]):
                    continue
                try:
                    data = json.loads(self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in _MISSING:
                        continue  # its writer finished meanwhile
                    raise
                except ValueError:
                    data = {}
                upload_id = data.get("upload_id") if isinstance(data, dict) else None
                records[str(upload_id or obj["Key"])] = _UploadRecord(
                    obj["Key"], owners.Owner.from_dict(data.get("owner") if isinstance(data, dict) else None),
                    obj["LastModified"])
        return records

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":  # ended meanwhile
                raise


@dataclass(frozen=True)
class _UploadRecord:
    key: str  # the record's own full key
    owner: owners.Owner | None
    modified: datetime


def _abandoned(owner: owners.Owner | None, last_seen: datetime, cutoff: datetime) -> bool:
    """An upload's writer is gone: certainly, or as far as anyone can tell after ``cutoff``."""
    gone = owners.is_gone(owner) if owner is not None else None
    return gone if gone is not None else last_seen < cutoff


class _Body:
    """A file-like wrapper around a boto StreamingBody that translates errors."""

    def __init__(self, body: Any, storage: S3Storage, key: str):
        self._body = body
        self._storage = storage
        self._key = key

    def read(self, n: int = -1) -> bytes:
        try:
            return self._body.read(None if n is None or n < 0 else n)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._storage.error("cannot read", self._key, exc) from None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> "_Body":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""Load a saved image set back into the engine, streaming, verified as it is read.

For each image, a ``docker load`` archive is produced on the fly (manifest.json,
the config, one ``<diff id>/layer.tar`` per layer) from the stored blobs: each
blob is read through the SHA-256 of its stored bytes, decrypted when it was
encrypted, decompressed, and its content checked against its digest. A blob
that fails a check ends the stream, so the engine never tags an image from
altered data. The load keeps the image id (the config's digest) and the tags.
Registry digests (RepoDigests) are facts of a registry, not of the image: the
engine records them on pull or push only; the set's manifest lists them.

Raises DockerError, StorageError (ChecksumMismatch), DecryptionError and
ImageSetNotFound (an IMAGE the set does not hold).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import zstandard

from maintainer.crypto.errors import DecryptionError
from maintainer.crypto.keyring import DecryptingReader, Keyring
from maintainer.dockerapi import docker_errors, tar_stream
from maintainer.errors import DockerError
from maintainer.images.backup_store import BlobRecord, ImageSetNotFound, SavedImage, SetManifest
from maintainer.imageref import normalize_tag
from maintainer.storage.base import COPY_CHUNK, Storage
from maintainer.storage.objectset import ChecksumMismatch, open_verified


@dataclass
class Loaded:
    image: SavedImage
    action: str  # loaded | present

    def line(self) -> str:
        name = ", ".join(self.image.tags) or self.image.id[:19]
        verb = "loaded" if self.action == "loaded" else "already present, tags set"
        return f"{name}: {verb} ({self.image.id[:19]})"


def select_images(manifest: SetManifest, wanted: list[str]) -> list[SavedImage]:
    """The set's images named by tag or id (all when ``wanted`` is empty)."""
    if not wanted:
        return list(manifest.images)
    chosen = []
    for text in wanted:
        norm = normalize_tag(text)
        short = text.removeprefix("sha256:")
        match = next((i for i in manifest.images if (norm and norm in {normalize_tag(t) for t in i.tags})
                      or (len(short) >= 12 and i.id.removeprefix("sha256:").startswith(short))), None)
        if match is None:
            names = ", ".join(t for i in manifest.images for t in i.tags) or "untagged images only"
            raise ImageSetNotFound(f"image set {manifest.group}/{manifest.id} has no image {text} (it has {names})")
        if match not in chosen:
            chosen.append(match)
    return chosen


def blob_chunks(storage: Storage, keyring: Keyring, record: BlobRecord) -> Iterator[bytes]:
    """The content of a blob, checked against its stored and its content digest."""
    label = f"image blob {record.digest[:19]}"
    raw = open_verified(storage, record.key, size=record.stored_size, sha256=record.sha256, label=label)
    try:
        source = raw
        if record.encryption is not None:
            source = DecryptingReader(raw, keyring.identities_for(label, record.encryption.get("recipients") or []))
        reader = zstandard.ZstdDecompressor().stream_reader(source)
        content = hashlib.sha256()
        size = 0
        try:
            while chunk := reader.read(COPY_CHUNK):
                content.update(chunk)
                size += len(chunk)
                yield chunk
        except (zstandard.ZstdError, DecryptionError) as exc:
            raw.verify()  # altered stored bytes: the checksum says so, which is the clearer cause
            raise ChecksumMismatch(f"{label}: cannot read it back: {exc}") from None
        raw.verify()
        if size != record.size or f"sha256:{content.hexdigest()}" != record.digest:
            raise ChecksumMismatch(f"{label}: content is {size} bytes with sha256:{content.hexdigest()[:12]}..., "
                                   f"not the {record.size} bytes of {record.digest[:19]}...")
    finally:
        raw.close()


def load_archive(image: SavedImage, manifest: SetManifest, storage: Storage, keyring: Keyring) -> Iterator[bytes]:
    """A ``docker load`` tar of ``image``, produced as the engine reads it."""
    config = manifest.blobs[image.id]
    layers = list(dict.fromkeys(image.layers))
    doc = [{"Config": f"{config.hex}.json", "RepoTags": image.tags or None,
            "Layers": [f"{manifest.blobs[d].hex}/layer.tar" for d in image.layers]}]
    index = json.dumps(doc).encode()
    entries = [(f"{config.hex}.json", config.size, blob_chunks(storage, keyring, config))]
    for digest in layers:
        record = manifest.blobs[digest]
        entries.append((f"{record.hex}", 0, None))
        entries.append((f"{record.hex}/layer.tar", record.size, blob_chunks(storage, keyring, record)))
    entries.append(("manifest.json", len(index), [index]))
    return tar_stream(entries)


def restore_image(api, image: SavedImage, manifest: SetManifest, storage: Storage, keyring: Keyring) -> Loaded:
    """Load ``image`` unless the engine has it already; either way its tags name it after."""
    # Lazy: the docker SDK costs ~60 ms at start-up; only runs that use the engine load it.
    from docker.errors import ImageNotFound, NotFound

    try:
        api.inspect_image(image.id)
        present = True
    except (ImageNotFound, NotFound):
        present = False
    if not present:
        with docker_errors(f"load image {image.tags[0] if image.tags else image.id[:19]}"):
            for line in api.load_image(load_archive(image, manifest, storage, keyring)):
                if isinstance(line, dict) and line.get("error"):
                    raise DockerError(f"load image {image.id[:19]}: {line['error']}")
    with docker_errors(f"tag image {image.id[:19]}"):
        api.inspect_image(image.id)  # DockerError if the load did not produce it
        for tag in image.tags:
            repository, _, name = tag.rpartition(":")
            api.tag(image.id, repository, name, force=True)
    return Loaded(image, "present" if present else "loaded")

"""`maintainer images` and `maintainer images restore`: list the image sets that
image_backup jobs saved, and load one back into the engine."""

from __future__ import annotations

import click

from maintainer.cli.app import App, pass_app
from maintainer.cli.output import echo, human_size, print_json, table
from maintainer.crypto.keyring import Keyring
from maintainer.dockerapi import connect
from maintainer.errors import ConfigError, UsageError
from maintainer.images.backup_store import find_set, list_sets
from maintainer.images.load import restore_image, select_images
from maintainer.storage import open_storage


def _backup_jobs(config, job: str | None) -> list[tuple[str, object]]:
    """(job name, spec) of the image_backup jobs asked for; ConfigError if there are none."""
    every = config.jobs_of_type("image_backup")
    jobs = [(n, s) for n, s in every.items() if job is None or n == job]
    if job is not None and not jobs:
        raise ConfigError(f"no image_backup job named '{job}' (image_backup jobs: {', '.join(every) or 'none'})")
    if not jobs:
        raise ConfigError(f"{config.source or 'the configuration'} has no image_backup job")
    return jobs


def _open(config, name: str, spec):
    return open_storage(config.storage[spec.storage], name=spec.storage), spec.compose_project or name


@click.group("images", invoke_without_command=True)
@click.option("--job", metavar="NAME", help="Only this image_backup job's sets.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def images(ctx: click.Context, job: str | None, as_json: bool) -> None:
    """List saved image sets, oldest first (`images restore` loads one back)."""
    if ctx.invoked_subcommand is not None:
        return

    app: App = ctx.find_object(App)
    config = app.config()
    rows = []
    for name, spec in _backup_jobs(config, job):
        storage, group = _open(config, name, spec)
        for e in list_sets(storage, group):
            m = e.manifest
            rows.append({"job": name, "group": group, "id": e.id, "created": m.created.isoformat(),
                         "images": [{"id": i.id, "tags": i.tags, "repo_digests": i.repo_digests} for i in m.images],
                         "blobs": len(m.blobs), "stored_bytes": m.stored_size, "new_bytes": m.new_bytes,
                         "storage": spec.storage})
    if as_json:
        print_json(rows)
        return
    if not rows:
        echo("no image sets yet")
        return
    echo(table(["job", "group", "id", "images", "size", "new"],
               [[r["job"], r["group"], r["id"], ", ".join(t for i in r["images"] for t in i["tags"][:1]) or
                 f"{len(r['images'])} untagged", human_size(r["stored_bytes"]), human_size(r["new_bytes"])]
                for r in rows]))


@images.command("restore")
@click.argument("names", nargs=-1, metavar="[IMAGE]...")
@click.option("--latest", is_flag=True, help="The newest set (the default).")
@click.option("--set", "set_id", metavar="ID", help="The set with this id (see `maintainer images`).")
@click.option("--job", metavar="NAME", help="The image_backup job (needed when there are several).")
@pass_app
def restore(app: App, names: tuple[str, ...], latest: bool, set_id: str | None, job: str | None) -> None:
    """Load a saved set's images (or only IMAGE..., by tag or id) into the engine under
    their original names and ids. Images the engine has already only get their tags."""
    if latest and set_id:
        raise UsageError("give --latest or --set ID, not both")
    config = app.config()
    jobs = _backup_jobs(config, job)
    if len(jobs) > 1:
        raise UsageError("several image_backup jobs: choose one with --job " + "|".join(n for n, _ in jobs))
    name, spec = jobs[0]
    storage, group = _open(config, name, spec)
    entry = find_set(storage, group, set_id)
    chosen = select_images(entry.manifest, list(names))
    keyring = Keyring.of(config, spec.storage)
    client = connect()
    try:
        for image in chosen:
            loaded = restore_image(client.api, image, entry.manifest, storage, keyring)
            echo(loaded.line())
            for digest in image.repo_digests:
                echo(f"  was {digest} in its registry (push it there again to restore that digest)")
    finally:
        client.close()
    echo(f"restored {len(chosen)} images from set {group}/{entry.id}")


COMMANDS: list = [images]

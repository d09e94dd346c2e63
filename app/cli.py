"""`effdet-service`: operator commands (database migration, API keys; the service runner joins them here)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.keys import KeyRequestError, create_key, list_keys, revoke_key
from core.db import migrate, session_scope
from core.settings import get_settings
from core.tables import Scope

app = typer.Typer(help="effdet-service: operate the EfficientDet training and serving service.", no_args_is_help=True)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database (EFFDET_DATABASE_URL, default SQLite in the data dir) to the newest schema."""
    migrate()
    typer.echo(f"database at head: {get_settings().resolved_database_url}")


keys = typer.Typer(help="API keys: with one, every API request needs `Authorization: Bearer KEY`.")
app.add_typer(keys, name="keys")


@keys.command("create")
def keys_create(
    name: str = typer.Argument(..., help="who or what the key is for (unique among keys not revoked)"),
    owner: str | None = typer.Option(None, help="the team or person whose resources it shares (default: its own)"),
    scope: Annotated[Scope, typer.Option(help="predict < train < admin")] = Scope.train,
) -> None:
    """Create an API key and print it alone on the last line, once (only its hash is stored)."""
    migrate()
    try:
        with session_scope() as session:
            row, key = create_key(session, name, owner, scope)
            typer.echo(
                f"created {scope.value} key {name!r} for owner {row.owner_id!r}; keep it, it is not shown again:"
            )
    except KeyRequestError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(key)


@keys.command("list")
def keys_list() -> None:
    """Every stored key: name, owner, scope, created, and when it was revoked."""
    migrate()
    with session_scope() as session:
        for row in list_keys(session):
            revoked = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            typer.echo(f"{row.name}\t{row.owner_id}\t{row.scope}\t{row.created_at:%Y-%m-%d %H:%M}\t{revoked}")


@keys.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="the key's name")) -> None:
    """Revoke a key: its next request, on every API process, gets 401."""
    migrate()
    try:
        with session_scope() as session:
            revoke_key(session, name)
    except KeyRequestError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {name!r}")


@app.command("create-key", hidden=True)
def create_key_command(name: str = typer.Argument(..., help="who or what the key is for")) -> None:
    """The former spelling of `keys create NAME` (a train key that is its own owner)."""
    keys_create(name, None, Scope.train)


checkpoints = typer.Typer(help="Pretrained checkpoints in DATA_DIR/checkpoints, which jobs name as `pretrained`.")
app.add_typer(checkpoints, name="checkpoints")


@checkpoints.command("fetch")
def checkpoints_fetch(
    variant: str = typer.Argument(..., help="e.g. efficientdet-d1 or efficientdet-lite0"),
    sha256: str | None = typer.Option(None, help="the archive's SHA-256, checked before it is unpacked"),
    force: bool = typer.Option(False, help="replace a checkpoint of that name"),
) -> None:
    """Download google/automl's published COCO checkpoint of a variant into the checkpoint folder."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from app.checkpoint_fetch import FetchError, fetch_checkpoint
    from core.layout import checkpoints_dir
    from core.store import publish_checkpoint

    settings = get_settings()
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task(variant, total=None)
        try:
            path = fetch_checkpoint(
                variant,
                checkpoints_dir(settings),
                settings.checkpoint_base_url,
                sha256,
                force,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
        except FetchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    publish_checkpoint(settings, path.name)
    typer.echo(f"{variant} is in {path}; jobs can name it as pretrained={variant!r}")


@checkpoints.command("push")
def checkpoints_push(name: str = typer.Argument(..., help="a checkpoint in DATA_DIR/checkpoints")) -> None:
    """Send a checkpoint of this machine's checkpoint folder to the artefact store (EFFDET_STORAGE_URL), where
    every API and worker machine finds it."""
    from core.store import publish_checkpoint

    settings = get_settings()
    if settings.storage_url is None:
        typer.echo("no EFFDET_STORAGE_URL: the data dir is the store; every machine already sees the checkpoint")
        return
    try:
        publish_checkpoint(settings, name)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name} is in {settings.storage_url}/checkpoints/{name}; every machine can use it")


@checkpoints.command("list")
def checkpoints_list() -> None:
    """The checkpoint folder as GET /v1/checkpoints lists it: name, format, the variants each fits."""
    from app.pretrained import list_checkpoints

    for entry in list_checkpoints(get_settings()):
        fits = ", ".join(entry.variants) or "-"
        typer.echo(f"{entry.name}\t{entry.format}\t{fits}\t{'usable' if entry.usable else entry.note}")


# Service commands (`run`: API + embedded worker) are registered below this line by the runner module.


@app.command("run")
def run_command() -> None:
    """Serve the API and one worker (SQLite + embedded queue unless EFFDET_* say otherwise); Ctrl-C stops both."""
    from app.runner import main

    main()

"""`effdet-service`: operator commands (database migration, API keys; the service runner joins them here)."""

from __future__ import annotations

import typer

from app.auth import create_key
from core.db import migrate, session_scope
from core.settings import get_settings

app = typer.Typer(help="effdet-service: operate the EfficientDet training and serving service.", no_args_is_help=True)


@app.command("migrate")
def migrate_command() -> None:
    """Upgrade the database (EFFDET_DATABASE_URL, default SQLite in the data dir) to the newest schema."""
    migrate()
    typer.echo(f"database at head: {get_settings().resolved_database_url}")


@app.command("create-key")
def create_key_command(name: str = typer.Argument(..., help="who or what the key is for")) -> None:
    """Create an API key and print it once (only its hash is stored); with a key, auth is on."""
    migrate()
    with session_scope() as session:
        row, key = create_key(session, name)
        typer.echo(f"created API key {row.id} for {name!r}; keep it, it is not shown again:")
    typer.echo(key)


# Service commands (`run`: API + embedded worker) are registered below this line by the runner module.


@app.command("run")
def run_command() -> None:
    """Serve the API and one worker (SQLite + embedded queue unless EFFDET_* say otherwise); Ctrl-C stops both."""
    from app.runner import main

    main()

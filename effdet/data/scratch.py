"""Scratch SQLite databases for a conversion's per-image bookkeeping (record keys, the gallery index's sort keys,
image digests), kept off the Python heap so that memory stays flat however many images a dataset has.

Each is SQLite's private temporary database: in memory while small, moved to a temporary file beyond a small
page cache, deleted when the connection closes (with the object that owns it).
"""

from __future__ import annotations

import sqlite3

CACHE_KIB = 4096
"""The page cache of one scratch database: what it holds in memory before using its temporary file."""


def scratch_database() -> sqlite3.Connection:
    """A new private temporary database, tuned for throw-away data (no journal, no syncs)."""
    connection = sqlite3.connect("", isolation_level=None)
    connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    return connection


class FirstSeen:
    """Remembers the first name given for each key (e.g. an image's digest) on disk, not in memory."""

    def __init__(self) -> None:
        self._db = scratch_database()
        self._db.execute("CREATE TABLE seen (key BLOB PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID")

    def first(self, key: bytes, name: str) -> str | None:
        """The name first given with `key`, or None (and `name` is remembered) when the key is new."""
        row = self._db.execute("SELECT name FROM seen WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        self._db.execute("INSERT INTO seen VALUES (?, ?)", (key, name))
        return None

"""A full data volume, recognised however it is reported (errno, SQLite, PostgreSQL, TensorFlow's messages) and
explained the same way by the API (507) and the worker (a failed job or conversion)."""

from __future__ import annotations

import errno

from sqlalchemy.exc import DBAPIError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")
"""How a full disk reads in messages that carry no errno: TensorFlow's file writes, SQLite, PostgreSQL."""
POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE disk_full."""


def is_disk_full(exc: BaseException) -> bool:
    """True when exc, or an exception it was raised from, says the disk (or the quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if getattr(current, "sqlstate", None) == POSTGRES_DISK_FULL:
            return True
        if any(text in str(current).lower() for text in DISK_FULL_TEXTS):
            return True
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


def disk_full_message(doing: str, retry: str) -> str:
    """What a user reads when the data volume filled up while `doing` something, ending with how to `retry`."""
    return (
        f"no space left on the data volume (EFFDET_DATA_DIR) while {doing}; free space there (delete datasets, "
        f"runs or models you no longer need), then {retry}"
    )

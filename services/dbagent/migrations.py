"""Brings a pushgrid database up to the newest schema; safe to run any number of times.

Migrations are the files migrations/NNN_name.sql, applied in order; each applied version is
recorded in schema_migrations. An applied file is never edited: a change is a new file,
written so that it can run again after failing halfway.

A rolling upgrade runs the old and the new release side by side, so a new file says in a
`-- rollout:` line which kind it is (patch/rollout.py refuses a release that brings one without):
  -- rollout: expand              adds what the new release uses; the old one runs on unharmed
  -- rollout: contract after NNN  removes what releases before migration NNN still use: allowed
                                  only when the running release already has NNN
A named lock serializes concurrent runs (several DBAgent hosts upgrading at once).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pymysql

from services.common.config import MySQLSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_NAME = "pushgrid.schema_migrations"
_LOCK_TIMEOUT_SECONDS = 60


_ROLLOUT_RE = re.compile(r"^--\s*rollout:\s*(expand|contract after (\d{3}))\s*$", re.MULTILINE)


def available(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """(version, path) of every migration file, oldest first."""
    found = []
    for path in directory.iterdir():
        match = _FILE_RE.fullmatch(path.name)
        if match:
            found.append((match.group(1), path))
    return sorted(found)


def statements(sql: str) -> list[str]:
    """The statements of a migration file: `--` comment lines dropped, split at a `;` ending a line.

    Migration files keep to that shape (no procedures, no `;` mid-line), so no SQL parser is needed.
    """
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = re.split(r";[ \t]*$", "\n".join(lines), flags=re.MULTILINE)
    return [part.strip() for part in parts if part.strip()]


def rollout_kind(sql: str) -> tuple[str, str] | None:
    """("expand", "") or ("contract", NNN) from a file's `-- rollout:` line; None without one."""
    match = _ROLLOUT_RE.search(sql)
    if match is None:
        return None
    return ("contract", match.group(2)) if match.group(2) else ("expand", "")


def migrate(settings: MySQLSettings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies the migrations of directory not applied yet to the primary; returns their versions."""
    conn = pymysql.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=settings.connect_timeout,
        read_timeout=600,
        write_timeout=60,  # a migration may take minutes, but a hung MySQL not forever
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, %s)", (_LOCK_NAME, _LOCK_TIMEOUT_SECONDS))
            if cur.fetchone()[0] != 1:
                raise RuntimeError(f"another migration held {_LOCK_NAME} for {_LOCK_TIMEOUT_SECONDS} s")
            try:
                return _apply_pending(cur, directory)
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", (_LOCK_NAME,))
    finally:
        conn.close()


def _apply_pending(cur: pymysql.cursors.Cursor, directory: Path) -> list[str]:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version CHAR(3) CHARACTER SET ascii NOT NULL PRIMARY KEY,"
        " name VARCHAR(200) NOT NULL,"
        " applied_at BIGINT NOT NULL"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    cur.execute("SELECT version FROM schema_migrations")
    done = {row[0] for row in cur.fetchall()}
    applied = []
    for version, path in available(directory):
        if version in done:
            continue
        # MySQL commits each DDL statement on its own, so a migration is not atomic: one that
        # fails halfway is not recorded, and its statements are written to run again (IF NOT EXISTS).
        for statement in statements(path.read_text(encoding="utf-8")):
            cur.execute(statement)
        cur.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
            (version, path.name, int(time.time() * 1000)),
        )
        applied.append(version)
    return applied

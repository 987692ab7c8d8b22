"""Users' languages in the store: detected at ingest (languages.py's script rule), backfilled, counted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from ..languages import detect_user_languages

__all__ = ["UNDETECTED", "backfill_languages", "language_mix", "stage_languages", "user_languages"]

UNDETECTED = "unknown"  # the language of a user never detected: only in an old store opened read-only
# Language detection reads this much of each event: plenty to tell a script, and a bound on the work of a long post.
_LANGUAGE_CHARS = 1000
_FETCH_ROWS = 10_000


def stage_languages(con: duckdb.DuckDBPyConnection, users_sql: str) -> None:
    """Temp table _langs (user_id, language) of the users `users_sql` selects, from their events' text.

    The text streams out in batches, grouped by user (see languages.detect_user_languages); the answers go back in
    one statement.
    """
    cursor = con.execute(
        f"SELECT user_id, left(concat_ws(' ', item_title, text), {_LANGUAGE_CHARS}) FROM events "
        f"WHERE user_id IN ({users_sql}) ORDER BY user_id"
    )
    found = list(detect_user_languages(_fetched(cursor)))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _langs AS "
        "SELECT unnest(?::VARCHAR[]) AS user_id, unnest(?::VARCHAR[]) AS language",
        [[u for u, _ in found], [lang for _, lang in found]],
    )


def _fetched(cursor: duckdb.DuckDBPyConnection) -> Iterator[Any]:
    while batch := cursor.fetchmany(_FETCH_ROWS):
        yield from batch


def backfill_languages(con: duckdb.DuckDBPyConnection) -> int:
    """Detect the language of the users that have none (a store from before schema 6), in one transaction;
    returns how many were filled in. A store with none missing costs one count."""
    if not _count(con, "users WHERE language IS NULL"):
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        stage_languages(con, "SELECT user_id FROM users WHERE language IS NULL")
        con.execute("UPDATE users SET language = l.language FROM _langs l WHERE users.user_id = l.user_id")
        filled = _count(con, "_langs")
        con.execute("DROP TABLE _langs")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return filled


def language_mix(con: Any, user_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Users per language of all users or of these, most users first."""
    where, params = _users_where(user_ids)
    rows = con.execute(
        f"SELECT {_language(con)}, count(*) FROM users {where} GROUP BY 1 ORDER BY 2 DESC, 1", params
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


def user_languages(con: Any, user_ids: Sequence[str]) -> dict[str, str]:
    """Each of these users' language (users not in the store are left out)."""
    where, params = _users_where(user_ids)
    rows = con.execute(f"SELECT user_id, {_language(con)} FROM users {where}", params).fetchall()
    return {str(u): str(lang) for u, lang in rows}


def _language(con: Any) -> str:
    """The users' language column, or UNDETECTED in a store opened read-only that predates it (schema 6)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'users' AND column_name = 'language'"
    ).fetchone()
    return f"coalesce(language, '{UNDETECTED}')" if row and row[0] else f"'{UNDETECTED}'"


def _users_where(user_ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    if user_ids is None:
        return "", []
    return "WHERE user_id IN (SELECT unnest(?::VARCHAR[]))", [list(user_ids)]


def _count(con: Any, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0

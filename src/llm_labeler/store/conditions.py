"""SQL that users type (`score --users`): checked to be one condition over one table, and nothing else.

A filter is pasted into the store's own statements (some of them DELETEs), so text is never trusted as typed.
A ';' or a comment outside a string is refused (either could end the condition early where it is pasted); DuckDB
parses the text as the WHERE clause of `SELECT * FROM <table>`, and anything but exactly that query (a second
statement, a UNION, a GROUP BY) or a subquery or parameter inside the condition is refused; DuckDB then re-spells
the condition from its parse tree (balanced, no stray text), and the re-spelt condition, the text that is pasted,
is checked again, bound, and evaluated once in a transaction that is rolled back.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

import duckdb

from ..errors import InputError

__all__ = ["duckdb_reason", "sql_condition"]

_LOCATIONS = {"query_location", "query_location_length"}  # differ between two spellings of one query
_FORBIDDEN = {"SUBQUERY": "subqueries are not allowed", "PARAMETER": "parameters ($1, ?) are not allowed"}


def sql_condition(con: Any, text: str, option: str = "--users", table: str = "users") -> str:
    """`(condition)`: the user's filter re-spelt by DuckDB, once checked to be one true/false condition on `table`.

    Anything else raises InputError naming the option, the filter and DuckDB's reason, on one line.
    """
    prefix = f"SELECT * FROM {table} WHERE "
    try:
        _check_tokens(text)
        tree = _checked_tree(con, f"{prefix}({text})", table)
        spelt = con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchone()[0]
        if not spelt.startswith(prefix):
            raise ValueError("DuckDB could not re-spell it as a condition")
        condition = f"({spelt[len(prefix) :]})"
        _checked_tree(con, prefix + condition, table)  # the text that will be pasted is itself checked
        _evaluate(con, condition, table)
    except (ValueError, duckdb.Error) as exc:
        reason = duckdb_reason(exc) if isinstance(exc, duckdb.Error) else str(exc)
        raise InputError(
            f"{option} filter {text!r} is not a condition on the {table} table: {reason}"
        ) from exc
    return condition


def duckdb_reason(exc: BaseException) -> str:
    """DuckDB's message on one line, without the `LINE n:` excerpt and caret that follow it."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)


def _check_tokens(text: str) -> None:
    """No ';' and no comment outside string literals: either could end the condition early where it is pasted."""
    for position, kind in duckdb.tokenize(text):
        if kind == duckdb.token_type.comment:
            raise ValueError("comments are not allowed")
        if kind == duckdb.token_type.operator and text[position] == ";":
            raise ValueError("a ';' ends a statement: give one condition, not statements")


def _checked_tree(con: Any, sql: str, table: str) -> dict[str, Any]:
    """DuckDB's parse of `sql`, which must be `SELECT * FROM table WHERE <a condition without subqueries>`."""
    count = len(con.extract_statements(sql))
    if count != 1:
        raise ValueError(f"it holds {count} statements, not one condition (a ';' ends a statement)")
    tree = _parse(con, sql)
    (canonical,) = _parse(con, f"SELECT * FROM {table}")["statements"]
    node = tree["statements"][0]["node"]
    if _strip({**node, "where_clause": None}) != _strip(canonical["node"]):
        raise ValueError("it is more than a condition (a second query, GROUP BY, ORDER BY, LIMIT ...)")
    for key, why in _FORBIDDEN.items():
        if _has_class(node["where_clause"], key):
            raise ValueError(why)
    return tree


def _parse(con: Any, sql: str) -> dict[str, Any]:
    tree: dict[str, Any] = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise ValueError(
            f"{tree.get('error_type', 'parser')} error: {tree.get('error_message', 'unparsable')}"
        )
    return tree


def _evaluate(con: Any, condition: str, table: str) -> None:
    """Bind and run the condition once on a cursor of its own, in a transaction that is always rolled back."""
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        kind = cur.execute(f"DESCRIBE SELECT {condition} AS c FROM {table}").fetchall()[0][1]
        if kind != "BOOLEAN":
            raise ValueError(f"it gives {kind}, not true/false")
        cur.execute(f"SELECT count(*) FROM {table} WHERE {condition}").fetchone()
    finally:
        with suppress(duckdb.Error):  # nothing to roll back when BEGIN itself failed
            cur.execute("ROLLBACK")
        cur.close()


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _LOCATIONS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _has_class(node: Any, cls: str) -> bool:
    if isinstance(node, dict):
        return node.get("class") == cls or any(_has_class(v, cls) for v in node.values())
    if isinstance(node, list):
        return any(_has_class(v, cls) for v in node)
    return False

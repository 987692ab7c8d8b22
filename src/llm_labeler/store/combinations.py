"""SQL of named scorer combinations (fitted by `eval tune`, applied by `label --combination`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import Store

__all__ = ["get_combination", "list_combinations", "save_combination"]

_COLUMNS = "name, method, backend, taxonomy_name, taxonomy_hash, config, provenance, created_at"


def save_combination(
    store: Store,
    name: str,
    method: str,
    backend: str,
    taxonomy: tuple[str, str],
    config: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> bool:
    """Store a combination under `name`, replacing one of that name; True when it replaced one."""
    existed = store.con.execute("SELECT count(*) FROM combinations WHERE name = ?", [name]).fetchone()
    store.con.execute("DELETE FROM combinations WHERE name = ?", [name])
    store.con.execute(
        "INSERT INTO combinations (name, method, backend, taxonomy_name, taxonomy_hash, config, provenance) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [name, method, backend, *taxonomy, json.dumps(config), json.dumps(provenance, default=str)],
    )
    return bool(existed and existed[0])


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    keys = [k.strip() for k in _COLUMNS.split(",")]
    out = dict(zip(keys, r))
    out["config"], out["provenance"] = json.loads(out["config"]), json.loads(out["provenance"])
    return out


def get_combination(store: Store, name: str) -> dict[str, Any] | None:
    """The stored combination of that name, or None."""
    r = store.con.execute(f"SELECT {_COLUMNS} FROM combinations WHERE name = ?", [name]).fetchone()
    return _row(r) if r else None


def list_combinations(store: Store) -> list[dict[str, Any]]:
    """Every stored combination, newest first."""
    rows = store.con.execute(f"SELECT {_COLUMNS} FROM combinations ORDER BY created_at DESC, name").fetchall()
    return [_row(r) for r in rows]

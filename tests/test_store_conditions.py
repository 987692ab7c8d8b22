"""SQL filters from users (`score --users`): one condition over the users table, never a statement."""

from __future__ import annotations

import pytest

from llm_labeler.errors import InputError
from llm_labeler.store import Store
from llm_labeler.store import student as sq

INJECTION = "true; DELETE FROM gold; SELECT 1 WHERE true"


def _counts(store: Store) -> dict[str, int]:
    return {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in ("gold", "users", "events")}


@pytest.fixture
def gold_store(loaded_store: Store) -> Store:
    users = loaded_store.user_ids(limit=5)
    loaded_store.set_gold("20ng_coarse", {u: ["tech"] for u in users}, "test")
    return loaded_store


def test_an_injected_statement_is_refused_and_the_gold_table_is_intact(gold_store: Store) -> None:
    before = _counts(gold_store)
    with pytest.raises(InputError) as info:
        sq.user_filter(gold_store, INJECTION)
    message = str(info.value)
    assert "\n" not in message and INJECTION in message and "--users filter" in message and "';'" in message
    assert _counts(gold_store) == before and before["gold"] == 5


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("true); DELETE FROM gold; SELECT (1", "';' ends a statement"),
        ("true) --", "comments are not allowed"),  # would hide the rest of the statement it is pasted into
        ("true) /* x */ OR (false", "comments are not allowed"),
        ("user_id IN (SELECT user_id FROM gold)", "subqueries are not allowed"),
        ("EXISTS (SELECT 1 FROM gold)", "subqueries are not allowed"),
        ("true) UNION (SELECT * FROM gold", "more than a condition"),
        ("true) GROUP BY (user_id", "more than a condition"),
        ("true) LIMIT (1", "more than a condition"),
        ("n_events > ?", "parameters"),
        ("n_events", "BIGINT, not true/false"),
        ("no_such_column > 3", 'Referenced column "no_such_column" not found'),
        ("count(*) > 1", "cannot contain aggregates"),
        ("n_events >", "syntax error"),
    ],
)
def test_anything_but_one_condition_is_a_one_line_input_error(
    gold_store: Store, text: str, reason: str
) -> None:
    before = _counts(gold_store)
    with pytest.raises(InputError, match="is not a condition on the users table") as info:
        sq.user_filter(gold_store, text)
    assert reason in str(info.value) and "\n" not in str(info.value) and repr(text) in str(info.value)
    assert _counts(gold_store) == before


def test_conditions_on_the_users_columns_still_work(gold_store: Store) -> None:
    users = gold_store.query("SELECT user_id, n_events FROM users")
    where = sq.user_filter(gold_store, "n_events >= 5")
    assert sq.count_users(gold_store, where) == sum(1 for u in users if u["n_events"] >= 5) > 0
    prefix = users[0]["user_id"][0]
    like = sq.user_filter(gold_store, f"user_id LIKE '{prefix}%'")
    assert sq.count_users(gold_store, like) == sum(1 for u in users if u["user_id"].startswith(prefix)) > 0
    # A ';' or '--' inside a string is data, not SQL; quotes inside strings survive DuckDB's re-spelling.
    assert sq.count_users(gold_store, sq.user_filter(gold_store, "user_id LIKE '%;--%'")) == 0
    assert sq.count_users(gold_store, sq.user_filter(gold_store, "user_id <> 'it''s' AND true")) == len(users)
    assert sq.user_filter(gold_store, None) == sq.user_filter(gold_store, "  ") == "TRUE"


def test_the_pasted_condition_is_duckdbs_own_spelling(gold_store: Store) -> None:
    assert (
        gold_store.condition("n_events>=5   AND user_id   LIKE 'a%'")
        == "(((n_events >= 5) AND (user_id ~~ 'a%')))"
    )


def test_a_filter_reads_through_a_read_only_store(gold_store: Store) -> None:
    gold_store.close()
    with Store(gold_store.path, read_only=True) as ro:
        assert sq.count_users(ro, sq.user_filter(ro, "n_events >= 1")) == ro.count_users()
        with pytest.raises(InputError):
            sq.user_filter(ro, INJECTION)

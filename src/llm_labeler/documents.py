"""The student's per-user document, defined once as data, rendered by each engine (DuckDB SQL, Spark columns).

A user's document is their whole history, oldest event first (events without a time last, ties broken by the
event's row hash), each event as its cleaned title and text joined by a space, events joined by `EVENT_SEPARATOR`.
`meta` carries event types and categories as tokens for the count features. Cleaning is the labeler's
(history.clean_text) as far as a query engine does it cheaply, so that markup never becomes a feature: tags out,
the common entities unescaped (&amp; last, as html.unescape reads '&amp;lt;' as '&lt;'), whitespace collapsed.

Every step is a plain regex or literal replacement that RE2 (DuckDB) and java.util.regex (Spark) read the same way:
control characters are written as themselves, never as escapes such as `\\v` (a vertical tab to RE2, any vertical
whitespace to Java). Bump `DOC_FORMAT` whenever the document changes: stored docs of another format are rebuilt.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = [
    "CLEAN_STEPS",
    "DOC_FORMAT",
    "EVENT_FIELDS_HASHED",
    "EVENT_SEPARATOR",
    "META_SEPARATOR",
    "ROW_HASH_SEPARATOR",
    "ROW_HASH_UNSET",
    "CleanStep",
]

DOC_FORMAT = 2


class CleanStep(NamedTuple):
    """One cleaning step: every match of `pattern` (a regex, or a literal for 'replace') becomes `repl`."""

    kind: Literal["regex", "replace"]
    pattern: str
    repl: str


_WHITESPACE = " \t\n\r\f\x0b"
CLEAN_STEPS: tuple[CleanStep, ...] = (
    CleanStep("regex", "<[^>]{0,200}>", " "),
    CleanStep("replace", "&nbsp;", " "),
    CleanStep("replace", "&#160;", " "),
    CleanStep("replace", "&lt;", "<"),
    CleanStep("replace", "&gt;", ">"),
    CleanStep("replace", "&quot;", '"'),
    CleanStep("replace", "&#39;", "'"),
    CleanStep("replace", "&#x27;", "'"),
    CleanStep("replace", "&apos;", "'"),
    CleanStep("replace", "&amp;", "&"),
    CleanStep("replace", "\xa0", " "),
    # Runs and non-space whitespace only: single spaces, most of them, cost nothing (a third of '\s+' -> ' ').
    CleanStep("regex", f"[{_WHITESPACE}]{{2,}}|[{_WHITESPACE[1:]}]", " "),
)
"""Applied in order to a title or a text; the result is then trimmed of spaces, and an empty one is NULL."""

EVENT_SEPARATOR = " \n "
META_SEPARATOR = " "
# The row hash (ingest's duplicate key and the tie-break of the order): md5 over these fields as text, joined by
# ROW_HASH_SEPARATOR, a missing one spelt ROW_HASH_UNSET.
EVENT_FIELDS_HASHED = (
    "user_id",
    "ts",
    "event_type",
    "item_id",
    "item_title",
    "item_category",
    "text",
    "rating",
)
ROW_HASH_SEPARATOR = "\x1f"
ROW_HASH_UNSET = "~"

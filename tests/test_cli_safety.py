"""User text never reaches rich as markup or raw control codes; no traceback reaches the user; Ctrl-C says how to
resume. Real store, real CLI, `fake:` backends (no model is loaded)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from test_distill import write_run
from typer.testing import CliRunner, Result

from llm_labeler.backends import register
from llm_labeler.backends.fake import FakeBackend
from llm_labeler.cli import app
from llm_labeler.cli.common import INTERRUPTED, progress
from llm_labeler.labeling import LabelProgress
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import LabelRecord, Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EVIL = "evil[/b]user"
LONG = "A" * 5000
RTL = "שלום עולם مرحبا بالعالم"
TITLES = {
    "i_close": "[/b] closing tag first",
    "i_bold": "[bold]x never bold",
    "i_link": "[link=http://x]y[/link] link",
    "i_ansi": "\x1b[31mred\x1b[0m and \x1b]0;retitled\x07 bell\r",
    "i_rtl": RTL,
    "i_bidi": "abc\u202edcba reversed",
    "i_long": LONG,
    "i_view": "- [view] looks like our own tag",
    "i_emoji": ":thumbs_up: :smile: stays text",
}
TAXONOMY = """name: "[/b]shop"
segments:
  - id: gamers
    name: "[bold]Gamers[/b]"
    description: Plays and buys video games, consoles and gaming gear.
  - id: readers
    name: "Readers [link=http://x]y[/link]"
    description: Reads and reviews books, novels and magazines.
"""


def _events(tmp_path: Path) -> Path:
    rows = [
        {
            "user_id": EVIL,
            "event_type": "review",
            "item_id": iid,
            "item_title": title,
            "text": f"{title} [/i]",
        }
        for iid, title in TITLES.items()
    ]
    rows += [
        {"user_id": "plain_user", "event_type": "view", "item_id": f"p{i}", "item_title": f"novel {i}"}
        for i in range(3)
    ]
    path = tmp_path / "ev[bold][i].jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _clean(result: Result, code: int = 0, as_json: bool = False) -> str:
    """The command's whole output, after checking it is what a terminal may safely show (JSON carries the whole
    text; tables and lines show long text clipped)."""
    text = result.output
    assert result.exit_code == code, text
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\r" not in text
    if not as_json:
        assert LONG not in text and max(map(len, text.splitlines() or [""])) < 2000
    return text


class _Evil(FakeBackend):
    """Answers text that never validates, full of markup and control codes (its errors quote it)."""

    def __init__(self) -> None:
        super().__init__("evil")

    def complete(self, request: Any) -> Any:
        done = super().complete(request)
        done.text = "[/b] not json \x1b[2J [bold]"
        return done


register("h3evil")(lambda arg: _Evil())


@pytest.fixture
def evil_db(tmp_path: Path) -> tuple[str, Path]:
    db = str(tmp_path / "evil.duckdb")
    tax = tmp_path / "evil_tax.yaml"
    tax.write_text(TAXONOMY, encoding="utf-8")
    text = _clean(runner.invoke(app, ["ingest", str(_events(tmp_path)), "--db", db]))
    assert "ev[bold][i].jsonl" in text
    return db, tax


def test_label_plan_runs_logs_show_render_user_text_literally(evil_db: tuple[str, Path]) -> None:
    db, tax = evil_db
    base = ["--db", db, "--taxonomy", str(tax), "--backend", "fake:echo", "--scorers", "json"]
    text = _clean(runner.invoke(app, ["plan", *base, "--users", EVIL]))
    assert "[/b] closing tag first" in text and "[view]" in text and "[bold]x never bold" in text
    text = _clean(runner.invoke(app, ["label", *base]))
    assert "[bold]Gamers[/b]" in text and "Readers [link=http://x]y[/link]" in text
    text = _clean(runner.invoke(app, ["runs", "--db", db]))
    assert "[/b]shop" in text
    bad = ["--db", db, "--taxonomy", str(tax), "--backend", "h3evil:x", "--scorers", "json", "--users", EVIL]
    _clean(runner.invoke(app, ["label", *bad]))
    text = _clean(runner.invoke(app, ["logs", "--db", db, "--errors"]))
    assert "OutputValidationError" in text
    _write_evil_label(db)
    text = _clean(runner.invoke(app, ["show", EVIL, "--db", db]))
    for title in ("[/b] closing tag first", "[link=http://x]y[/link] link", RTL, ":thumbs_up: :smile:"):
        assert text.count(title) == 1, (title, text)  # each evidence item once, by its title
    assert "\\x1b[31mred" in text and "\\u202e" in text  # control codes shown, not obeyed
    assert "rationale [/i] [bold]" in text and "summary [/b]" in text
    shown = json.loads(_clean(runner.invoke(app, ["show", EVIL, "--db", db, "--json"]), as_json=True))
    assert [e["item_id"] for e in shown["evidence_items"]] == list(TITLES)
    assert shown["evidence_items"][3]["item_title"] == TITLES["i_ansi"]  # JSON keeps the text exact (escaped)


def _write_evil_label(db: str) -> None:
    """The newest label of EVIL, with evidence (every item, each twice), a rationale and a profile of user text."""
    with Store(db) as store:
        lab = store.latest_label(EVIL)
        assert lab is not None
        names = {f.name for f in fields(LabelRecord)}
        record = LabelRecord(**{k: v for k, v in lab.items() if k in names})
        record.evidence = [*TITLES, *TITLES]
        record.rationale = "rationale [/i] [bold]\x1b[5m"
        store.write_labels([record])
        profile = {
            "summary": "summary [/b] " + LONG,
            "interests": [{"topic": "[u]", "weight": 1.0, "evidence": ["i_view"]}],
        }
        store.write_profile(record.run_id, EVIL, "call_h3", profile, 0)


def test_distill_score_explain_review_render_user_text_literally(
    loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str], tmp_path: Path
) -> None:
    db = loaded_store.path
    loaded_store.set_gold(coarse_taxonomy.name, {u: [g] for u, g in gold_coarse.items()}, "20ng fixture")
    run = write_run(loaded_store, coarse_taxonomy, gold_coarse, noise_every=7)
    _clean(runner.invoke(app, ["ingest", str(_events(tmp_path)), "--db", db]))
    tax = str(ROOT / "taxonomies" / "20ng_coarse.yaml")
    base = ["--db", db, "--taxonomy", tax, "--backend", "fake:echo", "--scorers", "json", "--users", EVIL]
    _clean(runner.invoke(app, ["label", *base]))
    _write_evil_label(db)
    model = tmp_path / "m[bold][i].skops"
    text = _clean(runner.invoke(app, ["distill", "--db", db, "--run", run, "--out", str(model)]))
    assert "m[bold][i].skops" in text
    _clean(runner.invoke(app, ["score", "--db", db, "--model", str(model)]))
    for args in (
        ["distill", "--run", run, "--out", str(tmp_path / "m2.skops")],
        ["score", "--model", str(model), "--full"],
        ["explain", EVIL, "--model", str(model)],
    ):
        result = runner.invoke(app, [*args, "--db", db, "--json"])
        _clean(result, as_json=True)
        assert isinstance(json.loads(result.stdout), dict)
    text = _clean(runner.invoke(app, ["explain", EVIL, "--db", db, "--model", str(model)]))
    assert EVIL in text and "rationale [/i] [bold]" in text and "[/b] closing tag first" in text
    out = tmp_path / "r[bold][i].csv"
    text = _clean(runner.invoke(app, ["review", "export", "--db", db, "--run", run, "--out", str(out)]))
    assert "r[bold][i].csv" in text
    text = _clean(runner.invoke(app, ["review", "import", "--db", db, str(out)]))
    assert "r[bold][i].csv" in text


def test_error_lines_quote_user_input_literally(tmp_path: Path) -> None:
    db = str(tmp_path / "e.duckdb")
    Store(db).close()  # an empty store: `show` opens read-only and refuses a missing file
    text = _clean(runner.invoke(app, ["show", "ghost[/b][bold]", "--db", db]), code=2)
    assert "error:" in text and "ghost[/b][bold]" in text
    text = _clean(runner.invoke(app, ["ingest", str(tmp_path / "no[bold][i].csv"), "--db", db]), code=2)
    assert "no[bold][i].csv" in text


def test_progress_description_is_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("eval [/b]suite", False) as update:
        update(LabelProgress("label", 1, 2, 0))
    assert "eval [/b]suite" in capsys.readouterr().err


def test_an_unexpected_exception_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_labeler.evals

    def broken(store: Store, run_id: str) -> str:
        raise RuntimeError("report engine broke on [/b]")

    monkeypatch.setattr(llm_labeler.evals, "render_report", broken)
    args = [
        "eval",
        "report",
        "eval_x",
        "--html",
        str(tmp_path / "r.html"),
        "--db",
        str(tmp_path / "x.duckdb"),
    ]
    Store(tmp_path / "x.duckdb").close()  # report opens read-only: the store must exist
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error: RuntimeError: report engine broke on [/b]" in result.stderr
    assert "Traceback" not in result.output
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == 2 and "Traceback" in debug.stderr and "error: RuntimeError" in debug.stderr
    env = runner.invoke(app, args, env={"LLM_LABELER_DEBUG": "1"})
    assert env.exit_code == 2 and "Traceback" in env.stderr


def test_store_io_errors_are_one_line(loaded_store: Store, tmp_path: Path) -> None:
    """A path under a regular file: the OS refuses, the user reads why in one line."""
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    html = tmp_path / "afile" / "report.html"
    import llm_labeler.evals

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llm_labeler.evals, "render_report", lambda store, run_id: "<!DOCTYPE html>")
        result = runner.invoke(app, ["eval", "report", "e", "--html", str(html), "--db", loaded_store.path])
    assert result.exit_code == 2, result.output
    assert "error: " in result.stderr and "afile" in result.stderr and "Traceback" not in result.output


class _Interrupting(FakeBackend):
    """Ctrl-C arrives during the first model call."""

    def __init__(self) -> None:
        super().__init__("ctrlc")

    def complete(self, request: Any) -> Any:
        raise KeyboardInterrupt

    def score_choices(self, prefix: str, text: str, choices: Any) -> Any:
        raise KeyboardInterrupt


register("h3ctrlc")(lambda arg: _Interrupting())


def test_ctrl_c_says_how_to_resume_and_exits_130(loaded_store: Store) -> None:
    tax = str(ROOT / "taxonomies" / "20ng_coarse.yaml")
    for scorer in ("json", "llm"):
        args = ["label", "--db", loaded_store.path, "--taxonomy", tax, "--backend", f"h3ctrlc:{scorer}"]
        result = runner.invoke(app, [*args, "--scorers", scorer, "--limit", "3"])
        assert result.exit_code == 130, result.output
        assert INTERRUPTED in result.stderr and "Traceback" not in result.output

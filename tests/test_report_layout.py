"""The eval report's matrix fits a 1400 px page: headline columns shown, the rest behind a <details> toggle.

The eval run is real (fixture users, real DuckDB file, the real CLI) with `fake:echo` as the LLM and LLM-only
combinations, so no model is loaded. The layout is measured in headless Chromium when it is installed.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.evals import HEADLINE, render_report
from llm_labeler.evals.report import _breakable
from llm_labeler.store import Store

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "20ng_sample"
WIDTH = 1400
runner = CliRunner()

# Appended to a copy of the page (the report itself carries no script): measures the layout at load time, opens the
# toggle, measures again, and leaves the figures in the DOM for --dump-dom.
_PROBE = """<script>
const shown = el => el.checkVisibility();  // false inside a closed <details>
const heads = sel => [...document.querySelectorAll(sel + ' th')];
const matrix = document.querySelector('table.matrix'), more = document.querySelector('details.more');
const r = {inner: window.innerWidth, page: document.documentElement.scrollWidth,
  matrix_right: matrix.getBoundingClientRect().right,
  matrix_heads: heads('table.matrix').filter(shown).map(th => th.textContent),
  more_visible: heads('details.more').filter(shown).length,
  more_heads: heads('details.more').map(th => th.textContent)};
more.open = true;
r.more_opened = heads('details.more').filter(shown).map(th => th.textContent);
r.page_opened = document.documentElement.scrollWidth;
r.more_right = document.querySelector('table.matrix-more').getBoundingClientRect().right;
const out = document.createElement('pre'); out.id = 'probe'; out.textContent = JSON.stringify(r);
document.body.appendChild(out);
</script>"""


def chromium() -> str | None:
    """The headless browser on PATH, if any."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser_args(tmp_path: Path, height: int = 900) -> list[str]:
    """Headless Chromium without network chatter, a throwaway profile, a WIDTH px window."""
    return [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{height}",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]


def probe_layout(page: Path, tmp_path: Path) -> dict[str, Any]:
    """Load a copy of the report with the probe script in Chromium at WIDTH px; the figures it measured."""
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    dom = subprocess.run(
        [*browser_args(tmp_path), "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    figures: dict[str, Any] = json.loads(html.unescape(dom[start : dom.index("</pre>", start)]))
    return figures


def assert_fits(figures: dict[str, Any], shown: list[str], hidden: list[str]) -> None:
    """The page and the matrix fit WIDTH px; hidden columns exist, unrendered until the toggle opens."""
    assert figures["inner"] == WIDTH  # the window really is WIDTH px wide, or the rest proves nothing
    assert figures["page"] <= WIDTH and figures["page_opened"] <= WIDTH
    assert figures["matrix_right"] <= WIDTH  # the matrix itself needs no horizontal scroll
    assert figures["matrix_heads"] == ["cell", *shown]
    assert set(hidden) <= set(figures["more_heads"])
    assert figures["more_visible"] == 0  # closed toggle: nothing of it is laid out
    assert set(hidden) <= set(figures["more_opened"])


class _Headers(HTMLParser):
    """Header texts of each table, keyed by the table's class, and whether the table sits in a <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[bool, list[str]]] = {}
        self._table: str | None = None
        self._details = 0
        self._th: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self._details += 1
        elif tag == "table":
            self._table = dict(attrs).get("class") or f"table{len(self.tables)}"
            self.tables[self._table] = (self._details > 0, [])
        elif tag == "th":
            self._th = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self._details -= 1
        elif tag == "th" and self._th is not None and self._table is not None:
            self.tables[self._table][1].append("".join(self._th))
            self._th = None

    def handle_data(self, data: str) -> None:
        if self._th is not None:
            self._th.append(data)


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An eval run with 2 prompts x 3 LLM-only combinations on 12 fixture users; (db, eval id)."""
    tmp = tmp_path_factory.mktemp("report")
    suite = {
        "name": "wide",
        "taxonomy": str(ROOT / "taxonomies" / "20ng_coarse.yaml"),
        "dataset": {
            "loader": "files",
            "events": str(FIXTURE / "events.jsonl"),
            "gold_csv": str(FIXTURE / "gold.csv"),
            "gold": "gold_coarse",
            "split": "all",
        },
        "prompts": ["segment_score@1", "segment_score_fewshot@1"],
        "backends": ["fake:echo"],
        "combinations": [
            {"name": "llm-raw", "specs": [{"name": "llm", "calibration": "none"}]},
            {"name": "llm-batch-calibrated", "specs": [{"name": "llm"}]},
            {"name": "json-answer", "baseline": True, "specs": [{"name": "json", "calibration": "none"}]},
        ],
        "metrics": ["accuracy", "macro_f1", "kappa", "per_segment.religion.f1"],
    }
    path = tmp / "wide.yaml"
    path.write_text(yaml.safe_dump(suite))
    db = tmp / "wide.duckdb"
    result = runner.invoke(app, ["eval", "run", str(path), "--db", str(db), "--limit", "12", "--json"])
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)["run_id"]


SHOWN = ["accuracy", "macro_f1", "kappa", "per_segment.religion.f1"]
HIDDEN = [
    "prompt",
    "backend",
    "micro_f1",
    "coverage",
    "ece",
    "latency_p95_ms",
    "cost_usd",
    "covered.macro_f1",
]


def test_matrix_shows_the_headline_and_puts_the_rest_behind_a_toggle(wide_run: tuple[Path, str]) -> None:
    db, eval_id = wide_run
    with Store(db) as store:
        page = render_report(store, eval_id)
    parser = _Headers()
    parser.feed(page)
    in_details, shown = parser.tables["matrix"]
    assert not in_details and shown == ["cell", *SHOWN]
    more_in_details, more = parser.tables["matrix-more"]
    assert more_in_details and more[0] == "cell" and set(HIDDEN) <= set(more)
    assert not set(SHOWN) & set(more)  # each metric once
    assert set(HEADLINE) <= set(shown) | set(more)  # nothing is lost, only folded away
    assert page.count("<tr class='primary'>") == 2  # one primary row in each table
    for external in ("<script", "<link", "src=", "https://", "url("):
        assert external not in page


def test_long_ids_may_wrap_and_stay_escaped() -> None:
    raw = "openai-compatible:http://h/v1#m|p_q.r@1 & <b>'x'</b>"
    out = _breakable(raw)
    assert out.count("<wbr>") == 11 and "<b>" not in out
    assert html.unescape(out.replace("<wbr>", "")) == raw


@pytest.mark.skipif(
    chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_matrix_fits_1400px_in_headless_chromium(wide_run: tuple[Path, str], tmp_path: Path) -> None:
    db, eval_id = wide_run
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["eval", "report", eval_id, "--html", str(page), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert_fits(probe_layout(page, tmp_path), SHOWN, HIDDEN)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser_args(tmp_path), f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert shot.read_bytes().startswith(b"\x89PNG")

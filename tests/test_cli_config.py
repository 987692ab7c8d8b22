"""The config file and its precedence (flag > env > config file > default), `config`, --version, completion,
--quiet, option validation and the --scorers syntax."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_labeler import __version__, settings
from llm_labeler.backends.fake import FakeBackend
from llm_labeler.cli import app
from llm_labeler.cli.label import parse_scorers
from llm_labeler.errors import ConfigError, InputError
from llm_labeler.labeling import default_specs
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TAX = str(ROOT / "taxonomies" / "20ng_coarse.yaml")


def _config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, name: str = "llm_labeler.toml"
) -> Path:
    monkeypatch.chdir(tmp_path)
    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_gives_the_defaults_and_config_shows_sources(
    loaded_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(
        tmp_path,
        monkeypatch,
        f'db = "{loaded_store.path}"\nbackend = "fake:echo"\ntaxonomy = "{TAX}"\nconcurrency = 2\n'
        'scorers = "json"\nbudget-tokens = 200\n',
    )
    labeled = runner.invoke(app, ["label", "--limit", "2", "--json"])  # no --db, --taxonomy, --backend
    assert labeled.exit_code == 0, labeled.output
    rows = [json.loads(line) for line in labeled.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["model_id"] == "fake-echo"
    shown = json.loads(runner.invoke(app, ["config", "--json"]).stdout)
    assert shown["config_file"] == str(path)
    got = shown["settings"]
    assert got["backend"] == {"value": "fake:echo", "source": str(path)}
    assert got["budget_tokens"]["value"] == 200 and got["threshold"] == {"value": 0.0, "source": "default"}
    monkeypatch.setenv("LLM_LABELER_BACKEND", "fake:junk")
    got = json.loads(runner.invoke(app, ["config", "--json"]).stdout)["settings"]
    assert got["backend"] == {"value": "fake:junk", "source": "env LLM_LABELER_BACKEND"}
    assert settings.resolve("backend", "fake:flag").source == "flag"  # a flag beats the environment
    table = runner.invoke(app, ["config"])
    assert table.exit_code == 0 and "env LLM_LABELER_BACKEND" in table.stdout and str(path) in table.stdout


def test_pyproject_table_is_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(
        tmp_path,
        monkeypatch,
        '[project]\nname = "x"\n\n[tool.llm_labeler]\ndb = "p.duckdb"\n',
        "pyproject.toml",
    )
    assert settings.default_db_path() == "p.duckdb"
    assert settings.resolve("db").source == f"{path} [tool.llm_labeler]"
    path.write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert settings.config_file() is None and settings.default_db_path() == "llm_labeler.duckdb"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('bakend = "fake:echo"\n', "unknown key 'bakend'"),
        ('concurrency = "four"\n', "key 'concurrency' must be an integer"),
        ("concurrency = 0\n", "key 'concurrency' must be at least 1"),
        ("threshold = 1.5\n", "key 'threshold' must be between 0 and 1"),
        ("db = [1]\n", "key 'db' must be a string"),
        ("db = \n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(
    text: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, monkeypatch, text)
    for args in (["config"], ["runs"], ["label", "--taxonomy", TAX]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and says in lines[0], result.stderr


def test_bad_environment_value_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, monkeypatch, "")
    monkeypatch.setenv("LLM_LABELER_CONCURRENCY", "lots")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2 and "LLM_LABELER_CONCURRENCY must be an integer" in result.stderr


def test_python_310_fails_clearly_only_when_a_config_file_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "tomllib", None)
    monkeypatch.chdir(tmp_path)
    assert settings.config_file() is None  # no file: nothing to read, nothing to fail
    (tmp_path / "llm_labeler.toml").write_text('db = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"needs Python 3\.11"):
        settings.config_file()


def test_version_completion_and_quiet(loaded_store: Store) -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"llm-labeler {__version__}"
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in shown.stdout and "--show-completion" in shown.stdout
    args = [
        "label",
        "--db",
        loaded_store.path,
        "--taxonomy",
        TAX,
        "--backend",
        "fake:echo",
        "--scorers",
        "json",
    ]
    loud = runner.invoke(app, [*args, "--limit", "2"])
    assert loud.exit_code == 0 and "warning:" in loud.stderr and "labeling" in loud.stderr
    quiet = runner.invoke(app, ["--quiet", *args, "--limit", "3"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and "Run label_" in quiet.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["label", "--limit", "0"],
        ["label", "--limit", "-3"],
        ["label", "--threshold", "1.5"],
        ["label", "--budget-tokens", "0"],
        ["plan", "--limit", "0"],
        ["label", "--concurrency", "0"],
        ["label", "--max-cost", "-1"],
        ["logs", "--limit", "-3"],
        ["runs", "--limit", "0"],
        ["demo", "--n", "0"],
        ["eval", "run", "suite.yaml", "--limit", "0"],
        ["score", "--model", "m.skops", "--margin", "1.5"],
        ["distill", "--run", "r", "--out", "m.skops", "--min-confidence", "2"],
        ["review", "export", "--run", "r", "--out", "r.csv", "--n", "0"],
    ],
)
def test_out_of_range_options_are_refused(args: list[str], loaded_store: Store) -> None:
    result = runner.invoke(app, [*args, "--db", loaded_store.path])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and "Traceback" not in result.output


def test_scorers_default_calibration_is_the_default_combinations() -> None:
    choice = FakeBackend()  # a ChoiceScorer: the default combination is llm + embedding
    assert parse_scorers("llm=0.3,embedding=1") == default_specs(choice, True)
    assert parse_scorers("json=0.5, embedding=1.0") == [
        ScorerSpec("json", 0.5, "none"),
        ScorerSpec("embedding", 1.0, "none"),
    ]
    assert parse_scorers("llm") == [ScorerSpec("llm", 1.0, "batch")]
    assert parse_scorers("llm=1:none,embedding:batch") == [
        ScorerSpec("llm", 1.0, "none"),
        ScorerSpec("embedding", 1.0, "batch"),
    ]
    assert parse_scorers(None) is None and parse_scorers(" ") is None
    for bad, says in (("llm=abc", "must be a number"), ("llm=1:zzz", "batch, none"), ("llm,,json", "got ''")):
        with pytest.raises(InputError, match=says):
            parse_scorers(bad)


def test_scorer_calibration_reaches_the_run(loaded_store: Store) -> None:
    args = ["label", "--db", loaded_store.path, "--taxonomy", TAX, "--backend", "fake:echo", "--limit", "2"]
    result = runner.invoke(app, [*args, "--scorers", "llm=1:none", "--json"])
    assert result.exit_code == 0, result.output
    user = json.loads(result.stdout.splitlines()[0])["user_id"]
    shown = json.loads(runner.invoke(app, ["show", user, "--db", loaded_store.path, "--json"]).stdout)
    assert shown["scorers"]["specs"] == [{"name": "llm", "weight": 1.0, "calibration": "none"}]
    bad = runner.invoke(app, [*args, "--scorers", "llm=1:sometimes"])
    assert bad.exit_code == 2 and "calibration of llm must be one of batch, none" in bad.stderr

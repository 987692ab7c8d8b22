"""The package works installed as a wheel, away from the checkout: prompts, taxonomies and the fixture ship inside.

The wheel is built from this checkout (`pip wheel .`) and installed into a fresh venv that sees only the test
environment's third-party packages (a path in a .pth file: its editable install of llm_labeler is not activated),
then `llm-labeler ingest` + `llm-labeler label` run from an empty folder on the embedded model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "LLM_LABELER_"))}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        out,
    )
    (found,) = out.glob("llm_labeler-*.whl")
    return found


def test_the_wheel_ships_prompts_taxonomies_and_the_fixture(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "llm_labeler/data/prompts/segment_score.v1.j2",
        "llm_labeler/data/prompts/segment_json.v1.j2",
        "llm_labeler/data/prompts/profile.v1.j2",
        "llm_labeler/data/taxonomies/20ng_coarse.yaml",
        "llm_labeler/data/taxonomies/ecommerce.yaml",
        "llm_labeler/data/fixtures/20ng_sample/events.jsonl",
        "llm_labeler/py.typed",
    ):
        assert shipped in names, f"{shipped} is not in {wheel.name}"


def test_installed_wheel_labels_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], tmp_path
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import llm_labeler, llm_labeler.settings as s; print(llm_labeler.__file__); "
                  "print(s.prompts_dir()); print(s.bundled_path('fixtures', '20ng_sample', 'events.jsonl'))"], work)  # fmt: skip
    package, prompts, events = where.stdout.split()
    assert package.startswith(str(venv)) and prompts.startswith(str(venv)), where.stdout
    cli = str(venv / "bin" / "llm-labeler")
    _run([cli, "ingest", events, "--db", "w.duckdb", "--json"], work)
    labeled = _run(
        [cli, "label", "--db", "w.duckdb", "--taxonomy", "20ng_coarse", "--limit", "3", "--json"], work
    )
    rows = [json.loads(line) for line in labeled.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3, labeled.stdout + labeled.stderr
    assert all(r["primary"] and r["prompt_hash"] and r["taxonomy_hash"] for r in rows), rows
    print(f"wheel {wheel.name} installed in a fresh venv labeled {len(rows)} users from {work}:")
    for r in rows:
        print(f"  {r['user_id']}: {r['primary']} {r['confidence']:.3f} (model {r['model_id'][:40]})")

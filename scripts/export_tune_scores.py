"""Export the raw per-user scores of an eval run's scorers, with the gold, as a small JSON fixture.

tests/test_fit.py fits combinations on these real scores (real models on real tune-half users) without running any
model. Each scorer is one (stage, model, prompt) group of the run's calls, named by its model:

    python scripts/export_tune_scores.py --db EVAL.duckdb --eval EVAL_ID --out tests/fixtures/tune_scores/NAME.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_labeler.store import Store
from llm_labeler.store import evals as sql
from llm_labeler.store.calls import scorer_scores

NAMES = {"gemma": "gemma", "qwen": "qwen", "MiniLM": "minilm", "nomic": "nomic", "e5": "e5"}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True)
    p.add_argument("--eval", required=True, help="eval run id whose gold users and taxonomy to export")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    with Store(args.db, read_only=True) as store:
        run = sql.get_eval(store, args.eval)
        gold = sql.eval_gold(store, args.eval)
        groups = scorer_scores(store, run["taxonomy_hash"], sorted(gold))
        taxonomy = store.taxonomy(run["taxonomy_hash"])
    if taxonomy is None:
        raise SystemExit(f"eval {args.eval}: its taxonomy is not in the store")
    scorers = {}
    for (stage, model, prompt), scores in groups.items():
        name = next((v for k, v in NAMES.items() if k in model), model)
        if name in scorers:  # the same model under a second prompt
            name += f"-{prompt}"
        rounded = {u: [round(x, 5) for x in v] for u, v in scores.items()}
        scorers[name] = {"stage": stage, "model": model, "prompt": prompt, "scores": rounded}
    body = {"taxonomy": taxonomy.name, "segments": taxonomy.ids, "gold": gold, "scorers": scorers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, separators=(",", ":")))
    counts = ", ".join(f"{k} ({len(v['scores'])})" for k, v in scorers.items())
    print(f"{args.out}: {len(gold)} users, scorers {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

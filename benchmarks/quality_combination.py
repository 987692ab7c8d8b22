"""How should a combination weigh an LLM nobody has fitted? Rules compared on real stored scores, no model run.

Reads fixtures written by scripts/export_tune_scores.py (each scorer's raw scores for the tune-half users of an
eval suite, with the gold). For each scorer put in the LLM's place (`--llm`, default: every LLM in the fixture,
plus a *stronger labeler simulated* by putting a strong embedding model's real scores in the LLM's place), with
`--embedding` as the embedding scorer and `--third` as a third voter for the label model, it prints accuracy and
macro-F1 of:

- fixed    the LLM at 0.3 (next-token) against the embedding at 1.0: the hand-set default for every backend
- equal    the LLM and the embedding at 1.0 each
- label-model  weights from the three scorers' agreement alone (segments.fit.label_model, no gold)
- fitted   weights + temperature fitted by log-loss on the same users (segments.fit.fit_weights; in-sample, the
           ceiling of what a rule could reach)

    python benchmarks/quality_combination.py tests/fixtures/tune_scores/20ng_coarse_tune.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_labeler.metrics import classification_metrics
from llm_labeler.segments.fit import first_choices, fit_weights, label_model, stack_scores

BATCH = {"gemma", "qwen", "e5"}  # batch-calibrated scorers (segments.base.DEFAULT_CALIBRATION)


def _metrics(
    z: np.ndarray, weights: Sequence[float], y: np.ndarray, segments: Sequence[str]
) -> dict[str, float]:
    logits = np.einsum("s,suk->uk", np.asarray(weights, dtype=np.float64), z)
    pred = [segments[i] for i in logits.argmax(axis=1)]
    m = classification_metrics([segments[i] for i in y], pred, segments)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}


def evaluate(data: dict[str, Any], llm: str, embedding: str, third: str, as_llm: str) -> list[dict[str, Any]]:
    """The four rules for one scorer in the LLM's place."""
    users = sorted(data["gold"])
    names = [llm, embedding, third]
    rows = [{n: data["scorers"][n]["scores"].get(u) for n in names} for u in users]
    cal = {n: np.mean([r[n] for r in rows if r[n]], axis=0) for n in names}
    calibrate = {n: "batch" if n.split("-")[0] in BATCH else "none" for n in names}
    z, mask = stack_scores(rows, names, cal, calibrate, len(data["segments"]))
    segments = data["segments"]
    y = np.asarray([segments.index(data["gold"][u][0]) for u in users])
    pair = z[:2]
    fixed = 0.3 if as_llm == "next-token" else 0.5
    votes = first_choices(z, mask)
    lm = label_model(votes, len(segments), names)
    fit = fit_weights(pair, y, names[:2], {}, 1.5)
    alone = {n: float((z[s].argmax(axis=1) == y).mean()) for s, n in enumerate(names)}
    out = []
    for rule, w in [
        ("fixed", [fixed, 1.0]),
        ("equal", [1.0, 1.0]),
        ("label-model", [lm.weights[llm], lm.weights[embedding], lm.weights[third]]),
        ("fitted", [fit.raw[llm], fit.raw[embedding]]),
    ]:
        zz = z if len(w) == 3 else pair
        m = _metrics(zz, w, y, segments)
        out.append(
            {
                "llm": llm,
                "llm_alone_acc": round(alone[llm], 3),
                "rule": rule,
                "weights": [round(x, 3) for x in w],
                **m,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fixtures", nargs="+", type=Path)
    p.add_argument(
        "--llm", action="append", help="scorer(s) in the LLM's place (default: gemma, qwen, nomic)"
    )
    p.add_argument("--embedding", default="minilm")
    p.add_argument("--third", default="e5", help="the label model's third voter")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    for path in args.fixtures:
        data = json.loads(path.read_text())
        llms = [n for n in (args.llm or ["gemma", "qwen", "nomic"]) if n in data["scorers"]]
        print(f"\n{path.name}: {len(data['gold'])} users, {len(data['segments'])} segments; embedding {args.embedding}, "
              f"third voter {args.third}")  # fmt: skip
        print(
            f"{'in the LLM place':<28} {'alone acc':>9}  {'rule':<12} {'weights (llm, emb[, 3rd])':<26} {'acc':>6} {'macro-F1':>8}"
        )
        for llm in llms:
            kind = "next-token" if llm in ("gemma", "qwen") else "simulated strong labeler"
            for r in evaluate(data, llm, args.embedding, args.third, "next-token"):
                if args.json:
                    print(json.dumps({"fixture": path.name, **r}))
                    continue
                print(
                    f"{llm + ' (' + kind + ')':<28} {r['llm_alone_acc']:>9.3f}  {r['rule']:<12} "
                    f"{', '.join(f'{w:.2f}' for w in r['weights']):<26} {r['accuracy']:>6.3f} {r['macro_f1']:>8.3f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

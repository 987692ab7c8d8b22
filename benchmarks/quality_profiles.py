"""Do a model's interest profiles cite real evidence? Profiles of tune-half 20 Newsgroups authors, checked.

`label --profile` asks the LLM for an InterestProfile whose evidence must be item ids or phrases of the user's
history; profiles.check_evidence drops every citation that is neither. This benchmark labels N authors of the tune
half with the profile stage on (the embedding scorer labels; the LLM only writes profiles) and prints:

- evidence validity: the share of cited evidence found in the history (kept / cited);
- the share of profiles that cite at least one real piece of evidence, and of profiles with no interest at all;
- the first --show profiles as written (after invalid evidence was dropped), beside the user's gold family.

    python benchmarks/quality_profiles.py --backend llamacpp:default --n 20
    python benchmarks/quality_profiles.py --backend llamacpp:qwen1.5 --n 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from llm_labeler.datasets import newsgroups as ng
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.settings import bundled_path
from llm_labeler.store import Store


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="llamacpp:default")
    p.add_argument("--n", type=int, default=20, help="tune-half authors")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--show", type=int, default=5, help="profiles to print")
    p.add_argument("--db", help="keep the store here (default: a temporary file); a rerun reuses its answers")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)

    taxonomy = load_taxonomy(bundled_path("taxonomies", "20ng_coarse.yaml"))
    tune, _ = ng.split_users(ng.load_users(), test_fraction=0.5, seed=20)
    users = ng.sample_users(tune, args.n, seed=args.seed)
    gold = {u.user_id: u.gold_coarse for u in users}
    with tempfile.TemporaryDirectory(prefix="quality_profiles_") as tmp:
        events = Path(tmp) / "events.jsonl"
        ng.write_events_jsonl(users, events)
        db = args.db or str(Path(tmp) / "profiles.duckdb")
        with Store(db) as store:
            store.ingest(events)
            config = LabelConfig(
                backend=args.backend, profile=True, scorers=[ScorerSpec("embedding", 1.0, "none")]
            )
            start = time.perf_counter()
            run = label_users(store, taxonomy, config, [u.user_id for u in users])
            seconds = time.perf_counter() - start
            rows = store.con.execute(
                "SELECT user_id, profile, evidence_dropped FROM profiles WHERE run_id = ? ORDER BY user_id",
                [run.run_id],
            ).fetchall()
    kept = dropped = with_evidence = empty = 0
    profiles = []
    for uid, body, lost in rows:
        prof = json.loads(body)
        n_kept = sum(len(i.get("evidence") or []) for i in prof.get("interests") or [])
        kept, dropped = kept + n_kept, dropped + int(lost or 0)
        with_evidence += n_kept > 0
        empty += not prof.get("interests")
        profiles.append((uid, prof, int(lost or 0)))
    cited = kept + dropped
    figures = {
        "backend": args.backend,
        "users": len(users),
        "profiles": len(rows),
        "failed": len(users) - len(rows),
        "cited": cited,
        "evidence_validity": round(kept / cited, 4) if cited else 0.0,
        "profiles_with_valid_evidence": round(with_evidence / max(len(rows), 1), 4),
        "profiles_without_interests": round(empty / max(len(rows), 1), 4),
        "s_per_user": round(seconds / max(len(users), 1), 3),
    }
    print(
        f"{args.backend}: {figures['profiles']}/{len(users)} profiles written ({figures['failed']} failed), "
        f"{cited} pieces of evidence cited, {kept} found in the history: evidence validity "
        f"{figures['evidence_validity']:.3f}; profiles citing real evidence {figures['profiles_with_valid_evidence']:.3f}, "
        f"with no interest {figures['profiles_without_interests']:.3f}; {figures['s_per_user']:.2f} s/user"
    )
    for uid, prof, lost in profiles[: args.show]:
        print(f"\n--- {uid} (gold: {gold.get(uid)}; {lost} invalid citations dropped)")
        print(textwrap.fill("summary: " + str(prof.get("summary", "")), 110))
        for interest in prof.get("interests") or []:
            ev = "; ".join(str(e)[:60] for e in interest.get("evidence") or []) or "(no valid evidence)"
            print(f"  - {str(interest.get('topic', ''))[:60]} [weight {interest.get('weight', '')}]: {ev}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

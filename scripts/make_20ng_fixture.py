"""Build tests/fixtures/20ng_sample/{events.jsonl,gold.csv} from the 20 Newsgroups tarball.

60 authors, 10 per coarse family, picked deterministically; at most 8 posts each, texts cut to 1,500
characters. Gold labels come from all of an author's posts, as in load_users.
Run: .venv/bin/python scripts/make_20ng_fixture.py
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    from llm_labeler.datasets import newsgroups as ng
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from llm_labeler.datasets import newsgroups as ng

PER_FAMILY = 10
MAX_POSTS = 8
MAX_CHARS = 1500
SEED = 20


def build(tarball: str | None, out_dir: Path) -> tuple[int, int]:
    """Write the fixture files; returns (users, events)."""
    users = ng.load_users(tarball, min_posts=3, max_posts_per_user=MAX_POSTS)
    picked: list[ng.NewsUser] = []
    for family in ng.COARSE_IDS:
        pool = [u for u in users if u.gold_coarse == family]
        picked += ng.sample_users(pool, PER_FAMILY, seed=SEED)
    picked.sort(key=lambda u: u.user_id)
    trimmed = [
        replace(u, events=[{**e, "text": (e["text"] or "")[:MAX_CHARS]} for e in u.events]) for u in picked
    ]
    n_events = ng.write_events_jsonl(trimmed, out_dir / "events.jsonl")
    n_users = ng.write_gold_csv(trimmed, out_dir / "gold.csv")
    return n_users, n_events


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tarball", default=None, help="path to 20news-bydate.tar.gz (default: auto-detect)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "20ng_sample")
    args = parser.parse_args(argv)
    n_users, n_events = build(args.tarball, args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {n_users} users, {n_events} events to {args.out} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""20 Newsgroups (by-date) as users with post histories and gold segments, without leaking the group."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timezone
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

from ..settings import newsgroups_dir

__all__ = [
    "COARSE_GROUPS",
    "COARSE_IDS",
    "DEFAULT_TARBALL",
    "ENV_VAR",
    "NEWSGROUPS",
    "TARBALL_NAME",
    "NewsUser",
    "Post",
    "clean_body",
    "coarse_segment_id",
    "find_tarball",
    "fine_segment_id",
    "load_users",
    "mask_newsgroups",
    "normalise_address",
    "parse_article",
    "parse_date",
    "parse_post",
    "read_posts",
    "sample_users",
    "split_users",
    "strip_quoted",
    "strip_signature",
    "user_id_for",
    "write_events_jsonl",
    "write_gold_csv",
]

ENV_VAR = "LLM_LABELER_DATASETS"
TARBALL_NAME = "20news-bydate.tar.gz"
# <repo>/src/llm_labeler/datasets/newsgroups.py -> <repo>/../shared/datasets/20newsgroups/20news-bydate.tar.gz
_REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TARBALL = _REPO_ROOT.parent / "shared" / "datasets" / "20newsgroups" / TARBALL_NAME

NEWSGROUPS: tuple[str, ...] = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)

COARSE_IDS: tuple[str, ...] = ("computers", "recreation", "science", "politics", "religion", "marketplace")

_RELIGION = {"alt.atheism", "soc.religion.christian", "talk.religion.misc"}


def coarse_segment_id(group: str) -> str:
    """The coarse family id of one newsgroup name (e.g. 'sci.med' -> 'science')."""
    if group in _RELIGION:
        return "religion"
    if group == "misc.forsale":
        return "marketplace"
    if group.startswith("talk.politics."):
        return "politics"
    for prefix, family in (("comp.", "computers"), ("rec.", "recreation"), ("sci.", "science")):
        if group.startswith(prefix):
            return family
    raise ValueError(f"no coarse family for newsgroup {group!r}")


COARSE_GROUPS: dict[str, str] = {g: coarse_segment_id(g) for g in NEWSGROUPS}


def fine_segment_id(group: str) -> str:
    """The fine segment id of one newsgroup: dots become underscores ('sci.space' -> 'sci_space')."""
    return group.replace(".", "_")


# --------------------------------------------------------------------------------------------- locating


def find_tarball(explicit: str | Path | None = None) -> Path:
    """Locate the tarball: explicit path, else $LLM_LABELER_DATASETS, else <repo>/../shared/datasets."""
    tried: list[Path] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        candidates = [p] if not p.is_dir() else [p / TARBALL_NAME, p / "20newsgroups" / TARBALL_NAME]
    else:
        candidates = []
        env = newsgroups_dir(ENV_VAR)
        if env:
            candidates.append(Path(env).expanduser() / "20newsgroups" / TARBALL_NAME)
        candidates.append(DEFAULT_TARBALL)
        cwd_default = Path.cwd().parent / "shared" / "datasets" / "20newsgroups" / TARBALL_NAME
        if cwd_default.resolve() != DEFAULT_TARBALL.resolve():
            candidates.append(cwd_default)
    for cand in candidates:
        tried.append(cand)
        if cand.is_file():
            return cand.resolve()
    listed = ", ".join(str(t) for t in tried)
    raise FileNotFoundError(
        f"20 Newsgroups tarball {TARBALL_NAME} not found; tried: {listed}. Pass its path explicitly or set "
        f"{ENV_VAR} to a directory that contains 20newsgroups/{TARBALL_NAME}."
    )


# --------------------------------------------------------------------------------------------- parsing

_HEADER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*):[ \t]?(.*)$")
_MSGID_RE = re.compile(r"<[^<>\s]*@")
_ADDR_RE = re.compile(r"[^\s<>()\",]+@[^\s<>()\",]+")


def parse_article(raw: str) -> tuple[dict[str, str], str]:
    """Split an RFC-822 style article into (headers with lowercased names, body); first header wins."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headers: dict[str, str] = {}
    last: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            break
        if line[:1] in (" ", "\t"):
            # A folded header line. The corpus stripped Path:, References: and the like but left some of their
            # folded lines behind (message ids): those, and lines with no header before them, are dropped.
            if last is not None and last != "from" and not _MSGID_RE.search(line):
                headers[last] = f"{headers[last]} {line.strip()}".strip()
            i += 1
            continue
        m = _HEADER_RE.match(line)
        if m is None:
            break  # no blank line before the body: the body starts here
        name = m.group(1).lower()
        last = name if name not in headers else None
        if last is not None:
            headers[name] = m.group(2).strip()
        i += 1
    return headers, "\n".join(lines[i:])


def normalise_address(from_header: str) -> str | None:
    """The lowercased address in a From: value ('Name <a@b>' or 'a@b (Name)'); None if there is none."""
    _, addr = parseaddr(from_header)
    if "@" in addr:
        return addr.strip().lower()
    m = _ADDR_RE.search(from_header)
    if m:
        return m.group(0).lower()
    # UUCP bang paths and bare names: whatever is left once comments are removed.
    rest = re.sub(r"\([^)]*\)", " ", from_header).strip().strip("<>").strip()
    rest = " ".join(rest.split())
    return rest.lower() or None


def user_id_for(address: str) -> str:
    """The pseudonymous user id of an address: 'u_' + the first 16 hex digits of its sha256."""
    return "u_" + hashlib.sha256(address.encode("utf-8")).hexdigest()[:16]


def parse_date(value: str | None) -> str | None:
    """A Date: header value as naive UTC ISO 'YYYY-MM-DDTHH:MM:SS', or None if absent or unparsable."""
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.replace(microsecond=0).isoformat(timespec="seconds")


_QUOTE_RE = re.compile(r"^\s*\|?\s*>")
# 'In article <id> x@y (Name) writes:', 'In <id> ...', 'In article 27089, x@y reports:', 'In article: <id>'
_ATTRIB_START_RE = re.compile(
    r"^\s*In\s+(?:(?:article|message)\b\s*(?:<|:|\S*@|\(|\d+(?:@\S+)?\s*(?:,|of\b|in\b))|<)", re.IGNORECASE
)
_ATTRIB_END_RE = re.compile(r"\b(?:writes|wrote|says|said)\s*:\s*$", re.IGNORECASE)


def strip_quoted(body: str) -> str:
    """Drop quoted reply lines ('>' or '|>') and 'In article <...> ... writes:' attribution lines."""
    out: list[str] = []
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if _QUOTE_RE.match(line):
            i += 1
            continue
        if _ATTRIB_START_RE.match(line) or (
            re.match(r"\s*In article\b", line, re.IGNORECASE) and _ATTRIB_END_RE.search(line)
        ):
            i += 1
            # a wrapped attribution: the 'writes:' part sits on the next line or the one after
            if not _ATTRIB_END_RE.search(line):
                for j in range(i, min(i + 2, len(lines))):
                    if _ATTRIB_END_RE.search(lines[j]) and not _QUOTE_RE.match(lines[j]):
                        i = j + 1
                        break
            continue
        if _ATTRIB_END_RE.search(line) and "@" in line and len(line) < 160:
            i += 1  # 'someone@somewhere (Name) writes:' without the 'In article' part
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def strip_signature(body: str) -> str:
    """Cut everything from the first line that is exactly '-- ' or '--' (the signature separator)."""
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if line in ("--", "-- "):
            return "\n".join(lines[:i])
    return body


def _group_prefixes() -> list[str]:
    names: set[str] = set()
    for g in NEWSGROUPS:
        parts = g.split(".")
        for k in range(2, len(parts) + 1):
            names.add(".".join(parts[:k]))
    return sorted(names, key=lambda s: (-len(s), s))


# Names (and dotted prefixes such as 'comp.sys.mac') of the 20 groups, wherever they stand; any further dotted
# components are swallowed too ('comp.sys.mac.apps').
_KNOWN_GROUP_RE = re.compile(
    r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in _group_prefixes()) + r")(?:\.[\w+-]+)*(?![\w-])",
    re.IGNORECASE,
)
# Any other group of the same hierarchies ('sci.physics', 'alt.fan.x', 'talk.origins'), but not inside host
# names or e-mail addresses, and not file names such as 'misc.txt'.
_OTHER_GROUP_RE = re.compile(
    r"(?<![\w.@-])(?:alt|comp|misc|rec|sci|soc|talk)\."
    r"(?!(?:c|h|o|z|gz|txt|doc|zip|tar|exe|com|edu|org|net|gov|mil|uk|ps|gif|jpg|bat|sh|in|out)\b)"
    r"[a-z][\w+-]*(?:\.[\w+-]+)*",
    re.IGNORECASE,
)


def mask_newsgroups(text: str) -> str:
    """Replace literal newsgroup names (full or dotted prefixes such as 'comp.sys.mac') with '[group]'."""
    text = _KNOWN_GROUP_RE.sub("[group]", text)
    return _OTHER_GROUP_RE.sub("[group]", text)


_BLANK_RUN_RE = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")


def clean_body(body: str) -> str:
    """Body hygiene: drop quotes, attributions and signature, mask group names, collapse blank-line runs."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    text = strip_quoted(text)
    text = strip_signature(text)
    text = mask_newsgroups(text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_RUN_RE.sub("\n\n", text)
    return text.strip()


# --------------------------------------------------------------------------------------------- posts


@dataclass(frozen=True)
class Post:
    """One parsed article: the event fields plus what must stay out of the events (group, split)."""

    doc_id: str
    split: str
    group: str
    address: str
    item_id: str
    ts: str | None
    subject: str
    text: str

    def event(self) -> dict[str, Any]:
        """The event dict for this post (no group information in it)."""
        return {
            "user_id": user_id_for(self.address),
            "ts": self.ts,
            "event_type": "post",
            "item_id": self.item_id,
            "item_title": self.subject,
            "item_category": None,
            "text": self.text,
            "rating": None,
        }


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_post(raw: bytes | str, doc_id: str, group: str, split: str = "") -> Post | None:
    """Parse one article file into a Post; None when it has no usable From: address."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
    text = _decode(data)
    headers, body = parse_article(text)
    address = normalise_address(headers.get("from", ""))
    if not address:
        return None
    # doc ids repeat across groups (3,049 of them in the by-date set): a content hash keeps item ids unique
    # without putting the group into them.
    item_id = f"20ng-{doc_id}-{hashlib.sha256(data).hexdigest()[:8]}"
    return Post(
        doc_id=doc_id,
        split=split,
        group=group,
        address=address,
        item_id=item_id,
        ts=parse_date(headers.get("date")),
        subject=mask_newsgroups(headers.get("subject", "").strip()),
        text=clean_body(body),
    )


def read_posts(tarball: str | Path | None = None) -> list[Post]:
    """Parse every article of both splits in the tarball, in archive order."""
    return list(_read_posts_cached(str(find_tarball(tarball))))


@functools.lru_cache(maxsize=2)
def _read_posts_cached(path: str) -> tuple[Post, ...]:
    posts: list[Post] = []
    known = set(NEWSGROUPS)
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if len(parts) < 3:
                continue
            split_dir, group, doc_id = parts[-3], parts[-2], parts[-1]
            if group not in known or not split_dir.endswith(("-train", "-test")):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            post = parse_post(fh.read(), doc_id, group, split_dir.rsplit("-", 1)[1])
            if post is not None:
                posts.append(post)
    return tuple(posts)


def _doc_key(doc_id: str) -> tuple[int, str]:
    return (int(doc_id), doc_id) if doc_id.isdigit() else (1 << 62, doc_id)


def _post_order(p: Post) -> tuple[bool, str, tuple[int, str], str]:
    return (p.ts is None, p.ts or "", _doc_key(p.doc_id), p.item_id)


# --------------------------------------------------------------------------------------------- users


@dataclass(frozen=True)
class NewsUser:
    """One author: their post events in time order and the gold segments from the groups they chose."""

    user_id: str
    events: list[dict[str, Any]]
    gold_coarse: str
    gold_fine: str
    gold_multi: list[str]


def _majority_group(ordered: Sequence[Post]) -> str:
    counts = Counter(p.group for p in ordered)
    last_pos = {p.group: i for i, p in enumerate(ordered)}
    return min(counts, key=lambda g: (-counts[g], -last_pos[g], g))


def _build_user(posts: list[Post], max_posts: int | None) -> NewsUser:
    ordered = sorted(posts, key=_post_order)
    fine = _majority_group(ordered)
    kept = ordered if max_posts is None else ordered[:max_posts]
    return NewsUser(
        user_id=user_id_for(ordered[0].address),
        events=[p.event() for p in kept],
        gold_coarse=COARSE_GROUPS[fine],
        gold_fine=fine,
        gold_multi=sorted({COARSE_GROUPS[p.group] for p in ordered}),
    )


def load_users(
    tarball: str | Path | None = None, min_posts: int = 3, max_posts_per_user: int | None = None
) -> list[NewsUser]:
    """Authors with at least min_posts posts (both splits), sorted by user_id; gold uses all their posts."""
    if min_posts < 1:
        raise ValueError("min_posts must be >= 1")
    if max_posts_per_user is not None and max_posts_per_user < 1:
        raise ValueError("max_posts_per_user must be >= 1 or None")
    return list(_load_users_cached(str(find_tarball(tarball)), min_posts, max_posts_per_user))


@functools.lru_cache(maxsize=8)
def _load_users_cached(path: str, min_posts: int, max_posts: int | None) -> tuple[NewsUser, ...]:
    by_addr: dict[str, list[Post]] = {}
    for post in _read_posts_cached(path):
        by_addr.setdefault(post.address, []).append(post)
    users = [_build_user(ps, max_posts) for ps in by_addr.values() if len(ps) >= min_posts]
    users.sort(key=lambda u: u.user_id)
    return tuple(users)


def _hash_rank(seed: int, user_id: str) -> str:
    return hashlib.sha256(f"{seed}:{user_id}".encode()).hexdigest()


def split_users(
    users: Sequence[NewsUser], test_fraction: float, seed: int
) -> tuple[list[NewsUser], list[NewsUser]]:
    """Deterministic (train, test) split by user, by sha256(seed:user_id) rank; both sorted by user_id."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError("test_fraction must be within [0, 1]")
    ranked = sorted(users, key=lambda u: _hash_rank(seed, u.user_id))
    n_test = round(len(ranked) * test_fraction)
    test_ids = {u.user_id for u in ranked[:n_test]}
    train = sorted((u for u in users if u.user_id not in test_ids), key=lambda u: u.user_id)
    test = sorted((u for u in users if u.user_id in test_ids), key=lambda u: u.user_id)
    return train, test


def sample_users(
    users: Sequence[NewsUser], n: int, seed: int, exclude: set[str] | None = None
) -> list[NewsUser]:
    """n users picked by sha256(seed:user_id) rank, skipping excluded ids; sorted by user_id."""
    excluded = exclude or set()
    pool = [u for u in users if u.user_id not in excluded]
    if n < 0 or n > len(pool):
        raise ValueError(f"cannot sample {n} users from {len(pool)} available")
    ranked = sorted(pool, key=lambda u: _hash_rank(seed, u.user_id))
    return sorted(ranked[:n], key=lambda u: u.user_id)


# --------------------------------------------------------------------------------------------- writing


def write_events_jsonl(users: Iterable[NewsUser], path: str | Path) -> int:
    """Write every user's events, one JSON object a line; returns the number of lines."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8", newline="\n") as fh:
        for user in users:
            for event in user.events:
                fh.write(json.dumps(event, ensure_ascii=False) + "\n")
                n += 1
    return n


def write_gold_csv(users: Iterable[NewsUser], path: str | Path) -> int:
    """Write user_id,gold_coarse,gold_fine,gold_multi ('|'-joined) rows; returns the number of users."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["user_id", "gold_coarse", "gold_fine", "gold_multi"])
        for user in users:
            writer.writerow([user.user_id, user.gold_coarse, user.gold_fine, "|".join(user.gold_multi)])
            n += 1
    return n

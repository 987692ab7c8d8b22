"""discover: clustering, distinctive terms, naming (LLM, fallback, cache), the taxonomy YAML, --from, evaluation."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from llm_labeler.backends import get_llm
from llm_labeler.backends.base import BackendBase, Capabilities, Completion, Request
from llm_labeler.discovery import (
    DiscoverConfig,
    cluster_scores,
    discover_segments,
    hungarian_mapping,
    mapped_scores,
)
from llm_labeler.discovery.cluster import _dissolve_small, cluster_users, merge_close
from llm_labeler.discovery.naming import INVALID
from llm_labeler.discovery.terms import analyze, class_tfidf
from llm_labeler.errors import ConfigError, InputError
from llm_labeler.schemas import load_taxonomy
from llm_labeler.store import Store
from llm_labeler.store.calls import call_log


class HashEmbedder:
    """A deterministic bag-of-words embedder: real vectors of the real texts, no model to load."""

    backend_id, model_id = "test:hash", "hash-256"

    def __init__(self) -> None:
        self._vec = HashingVectorizer(n_features=512, alternate_sign=False, stop_words="english")
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        m = self._vec.transform(list(texts)).toarray().astype(np.float32)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)

    def encode_cached(self, texts: tuple[str, ...]) -> np.ndarray:
        return self.encode(list(texts))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


class NamingBackend(BackendBase):
    """Answers a naming prompt with a valid entry named after the group's first distinctive term."""

    backend_id, model_id = "test:namer", "namer-1"
    capabilities = Capabilities(json_schema=True, local=True)

    def __init__(self, same_name: Sequence[int] = ()) -> None:
        self.calls, self.same_name = 0, set(same_name)  # these calls (1 = the first) all answer one name

    def complete(self, request: Request) -> Completion:
        self.calls += 1
        prompt = request.messages[0]["content"]
        term = re.findall(r"Now this group\.\nDistinctive terms: ([^,\n]+)", prompt)[0].strip()
        label = "shared" if self.calls in self.same_name else term
        answer = {
            "id": f"{label}_fans",
            "name": f"{label.title()} enthusiasts",
            "description": f"Users who read and write a lot about {term} and related topics.",
            "include": [f"{term} discussions"],
            "exclude": [],
        }
        return Completion(json.dumps(answer), 10, 10, 1.0, finish_reason="stop")


@pytest.fixture
def emb() -> HashEmbedder:
    return HashEmbedder()


def _blobs(k: int, per: int, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(dims)[:k] * 3
    x = np.vstack([c + rng.normal(0, 0.3, (per, dims)) for c in centers])
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), per)


# -- pieces ------------------------------------------------------------------------------------------------
def test_analyze_words_and_cjk_bigrams() -> None:
    terms = analyze("The Clipper chip's key-escrow! mail me@x.org https://a.b/c 苹果手机 2024 it's")
    assert "clipper" in terms and "key-escrow" in terms and "chip" in terms
    assert {"苹果", "果手", "手机"} <= set(terms)
    assert not {"the", "me@x.org", "2024", "it", "org"} & set(terms)


def test_class_tfidf_finds_each_clusters_own_terms() -> None:
    docs = ["engine car tire road"] * 3 + ["god bible church faith"] * 3 + ["car god", "weather", "weather"]
    labels = np.array([0, 0, 0, 1, 1, 1, -1, -1, -1])
    terms = class_tfidf(docs, labels, n_terms=3)
    assert set(terms) == {0, 1}
    assert set(terms[0]) <= {"engine", "car", "tire", "road"} and set(terms[1]) <= {
        "god",
        "bible",
        "church",
        "faith",
    }


def test_auto_k_finds_the_blobs_and_given_k_is_kept() -> None:
    x, truth = _blobs(4, 25)
    auto = cluster_users(x, DiscoverConfig(min_size=5))
    assert auto.k == 4 and auto.how.startswith("auto") and set(auto.silhouettes) >= {2, 3, 4, 5}
    assert (
        cluster_scores(dict(enumerate(map(str, auto.labels))), dict(enumerate(map(str, truth))))["ari"] == 1.0
    )
    assert cluster_users(x, DiscoverConfig(k=6, min_size=1)).k == 6


def test_small_clusters_dissolve_and_close_ones_merge() -> None:
    x, truth = _blobs(3, 20)
    cut = truth.copy()
    cut[:4] = 3  # four users of blob 0 made a cluster of their own: under min_size, they go back to blob 0
    assert np.array_equal(_dissolve_small(x, cut, 5), truth)
    split = np.where(np.arange(60) < 10, 3, np.repeat([0, 1, 2], 20))  # blob 0 cut in two halves
    merged, n = merge_close(x, split, similarity=0.9)
    assert n == 1 and len(np.unique(merged)) == 3


def test_density_leaves_outliers_out() -> None:
    x, _ = _blobs(3, 30)
    noise = np.random.default_rng(1).normal(0, 1, (6, 16))
    x = np.vstack([x, noise / np.linalg.norm(noise, axis=1, keepdims=True)])
    found = cluster_users(x, DiscoverConfig(method="density", min_size=10))
    assert found.k == 3 and (found.labels == -1).sum() >= 3


def test_scores_against_gold() -> None:
    gold = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z", "f": "z"}
    perfect = {"a": "2", "b": "2", "c": "0", "d": "0", "e": "1", "f": "1"}
    assert cluster_scores(perfect, gold) | {"clusters": 3} == {
        "n": 6, "nmi": pytest.approx(1.0), "ari": 1.0, "purity": 1.0, "clusters": 3, "gold_segments": 3,
    }  # fmt: skip
    assert hungarian_mapping(perfect, gold) == {"2": "x", "0": "y", "1": "z"}
    # one cluster holds two gold segments, one user left out: mapping is one to one, the rest are misses
    partial = {"a": "p", "b": "p", "c": "p", "d": "q", "e": "q", "f": None}
    m = mapped_scores(partial, gold)
    assert m["accuracy"] == pytest.approx(3 / 6) and 0 < m["macro_f1"] < 1
    assert cluster_scores(partial, gold)["purity"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"k": 1}, "k must be between 2"), ({"k": 99}, "k must be between 2"), ({"method": "dbscan"}, "method"),
     ({"method": "density", "k": 4}, "--k applies to k-means"), ({"min_size": 0}, "min_size")],
)  # fmt: skip
def test_config_errors(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        DiscoverConfig(**kwargs)


# -- a discovery on the real fixture users -------------------------------------------------------------------
def test_junk_names_fall_back_to_terms_stored_as_failed_calls_and_rerun_calls_nothing(
    loaded_store: Store, emb: HashEmbedder, tmp_path: Path
) -> None:
    junk = get_llm("fake:junk", reuse=False)
    cfg = DiscoverConfig(k=4, min_size=5)
    first = discover_segments(loaded_store, cfg, embedder=emb, backend=junk)
    assert len(first.segments) == 4 and all(s.named_by == "terms" for s in first.segments)
    assert first.stats["failed_calls"] == 4 and first.warnings and "top terms" in first.warnings[0]
    failed = call_log(loaded_store, run_id=first.run_id)
    assert len(failed) == 4 and all(
        r["error"].startswith(INVALID) and r["stage"] == "discover" for r in failed
    )
    # the YAML is a taxonomy `label` accepts as is, with one evidence comment block per segment
    path = tmp_path / "t.yaml"
    path.write_text(first.yaml_text, encoding="utf-8")
    tax = load_taxonomy(path)
    assert tax.ids == [s.id for s in first.segments] and tax.content_hash() == first.taxonomy_hash
    assert first.yaml_text.count("# top terms: ") == 4 and first.yaml_text.count("# exemplar users: ") == 4
    run = loaded_store.get_run(first.run_id)
    assert run["kind"] == "discover" and run["taxonomy_hash"] == first.taxonomy_hash
    assert run["config"]["embedding_model"] == "hash-256" and len(run["config"]["prompt_hash"]) == 64
    # same inputs again: no embedding, no model call, the same taxonomy
    calls, texts = junk.calls, emb.texts  # type: ignore[attr-defined]
    again = discover_segments(loaded_store, cfg, embedder=emb, backend=junk)
    assert junk.calls == calls and emb.texts == texts  # type: ignore[attr-defined]
    assert again.stats["cache_hits"] == 4 and again.stats["embedded_users"] == 0
    assert again.taxonomy_hash == first.taxonomy_hash
    # --retry-failed asks again
    discover_segments(
        loaded_store, DiscoverConfig(k=4, min_size=5, retry_failed=True), embedder=emb, backend=junk
    )
    assert junk.calls > calls  # type: ignore[attr-defined]


def test_llm_names_are_used_and_cached(
    loaded_store: Store, emb: HashEmbedder, gold_coarse: dict[str, str]
) -> None:
    namer = NamingBackend()
    res = discover_segments(loaded_store, DiscoverConfig(k=6, min_size=5), embedder=emb, backend=namer)
    assert all(s.named_by == "llm" and s.id.endswith("_fans") for s in res.segments)
    assert res.stats["calls"] == namer.calls == len(res.segments) and not res.warnings
    assert sum(s.size for s in res.segments) == 60 and len(res.assignments) == 60
    assert all(len(s.exemplars) == 3 and set(s.exemplars) <= set(s.members) for s in res.segments)
    assert cluster_scores(res.assignments, gold_coarse)["nmi"] > 0.2  # real users: the clusters follow topics
    discover_segments(loaded_store, DiscoverConfig(k=6, min_size=5), embedder=emb, backend=namer)
    assert namer.calls == len(res.segments)


def test_segments_named_alike_are_merged(loaded_store: Store, emb: HashEmbedder) -> None:
    res = discover_segments(
        loaded_store, DiscoverConfig(k=4, min_size=5), embedder=emb, backend=NamingBackend([2, 3])
    )
    assert [s.id for s in res.segments].count("shared_fans") == 1 and len(res.segments) == 3
    assert res.stats["merged"] >= 1 and sum(s.size for s in res.segments) == 60
    shared = next(s for s in res.segments if s.id == "shared_fans")
    assert {res.assignments[u] for u in shared.members} == {"shared_fans"}
    with pytest.raises(InputError, match="form 1 segment"):  # every segment named alike: no taxonomy
        discover_segments(
            loaded_store, DiscoverConfig(k=3, min_size=5), embedder=emb, backend=NamingBackend([1, 2, 3])
        )


def test_refine_keeps_edited_segments_and_proposes_only_for_the_rest(
    loaded_store: Store, emb: HashEmbedder, tmp_path: Path
) -> None:
    namer = NamingBackend()
    first = discover_segments(loaded_store, DiscoverConfig(k=4, min_size=5), embedder=emb, backend=namer)
    path = tmp_path / "t.yaml"
    edited = first.yaml_text.replace(f"name: {first.segments[0].name}", "name: My own name", 1)
    path.write_text(edited, encoding="utf-8")
    kept = load_taxonomy(path)
    # the user keeps two of the four segments (one renamed): the others' users fit none of them
    kept = kept.model_copy(update={"segments": kept.segments[:2]})
    # (bag-of-words vectors sit far from short descriptions: the fit threshold is given)
    cfg = DiscoverConfig(min_size=5, min_similarity=0.05)
    refined = discover_segments(loaded_store, cfg, kept=kept, embedder=emb, backend=namer)
    assert [s.model_dump() for s in load_taxonomy_text(refined.yaml_text, tmp_path).segments[:2]] == [
        s.model_dump() for s in kept.segments
    ]
    assert [s.named_by for s in refined.segments[:2]] == ["kept", "kept"]
    new = refined.segments[2:]
    assert new and all(s.named_by == "llm" for s in new) and refined.stats["fit_threshold"] == 0.05
    assert refined.stats["new_segments"] == len(new)
    assert loaded_store.get_run(refined.run_id)["config"]["from_taxonomy"] == kept.content_hash()


def load_taxonomy_text(text: str, folder: Path) -> Any:
    path = folder / "refined.yaml"
    path.write_text(text, encoding="utf-8")
    return load_taxonomy(path)


def test_empty_histories_are_left_out_and_counted(
    loaded_store: Store, emb: HashEmbedder, tmp_path: Path
) -> None:
    extra = tmp_path / "empty.jsonl"
    rows = [
        {"user_id": f"zz_empty_{i}", "event_type": "post", "item_title": "<br/>", "text": "&nbsp;"}
        for i in range(3)
    ]
    extra.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    loaded_store.ingest(extra)
    res = discover_segments(
        loaded_store, DiscoverConfig(k=3, min_size=5), embedder=emb, backend=NamingBackend()
    )
    assert (
        res.stats["users"] == 63 and res.stats["empty_history"] == 3 and res.stats["users_with_history"] == 60
    )
    assert all(res.assignments[f"zz_empty_{i}"] is None for i in range(3))
    assert "3 left out for an empty one" in res.yaml_text


def test_bad_input(loaded_store: Store, emb: HashEmbedder, store: Store) -> None:
    fake = get_llm("fake:junk", reuse=False)
    with pytest.raises(InputError, match="cannot make 8 segments of at least 10"):
        discover_segments(loaded_store, DiscoverConfig(k=8, min_size=10), embedder=emb, backend=fake)
    with pytest.raises(InputError, match="no users selected"):
        discover_segments(
            loaded_store, DiscoverConfig(), users_sql="n_events > 1000", embedder=emb, backend=fake
        )
    with pytest.raises(InputError, match="--users"):
        discover_segments(
            loaded_store, DiscoverConfig(), users_sql="nonsense_column = 1", embedder=emb, backend=fake
        )


def test_names_must_rest_on_the_evidence() -> None:
    from llm_labeler.discovery.naming import SegmentName, grounded

    copied = SegmentName(
        id="home_baking", name="Home baking", description="Bake bread and cakes at home, recipes."
    )
    assert not grounded(copied, ["encryption", "clipper", "key"])
    real = copied.model_copy(update={"name": "Encryption policy"})
    assert grounded(real, ["encrypted", "clipper"])  # encryption ~ encrypted (first five letters)
    zh = SegmentName(id="stocks", name="股市投资者", description="关注股市和基金的读者, 每天看行情新闻。")
    assert grounded(zh, ["基金", "银行"]) and not grounded(zh, ["足球", "比赛"])


def test_mapped_gold_is_written_in_the_proposed_ids(tmp_path: Path) -> None:
    from llm_labeler.discovery import read_gold_csv, write_mapped_gold

    gold = {"a": "x", "b": "x", "c": "y", "d": "z"}
    path = tmp_path / "mapped.csv"
    assert write_mapped_gold(path, gold, {"p1": "x", "p2": "y"}) == 3  # z has no proposed segment: left out
    assert read_gold_csv(str(path)) == {"a": "p1", "b": "p1", "c": "p2"}
    with pytest.raises(InputError, match="gold file not found"):
        read_gold_csv(str(tmp_path / "none.csv"))

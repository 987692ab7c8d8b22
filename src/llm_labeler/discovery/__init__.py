"""Discover a taxonomy from the users themselves: embed -> cluster -> distinctive terms -> LLM names -> YAML.

config.py    DiscoverConfig (stored with the run), progress events, ProposedSegment, DiscoveryResult
vectors.py   each user's mean event embedding (the embedding scorer's texts and model), cached in the store
cluster.py   k-means with k by silhouette, or HDBSCAN (outliers left out); small clusters dissolved, close merged
terms.py     class-based TF-IDF terms (Latin words, CJK character bigrams)
naming.py    the LLM names each segment (schema-constrained, cached calls); term-based names when it cannot
output.py    the taxonomy YAML `label` accepts as is, a comment block of evidence per segment
run.py       one discovery (or a --from refinement), stored as a run with its provenance
evaluate.py  against gold: NMI, ARI, purity; Hungarian-mapped accuracy and macro-F1
"""

from __future__ import annotations

from .config import DiscoverConfig, DiscoverProgress, DiscoveryResult, ProposedSegment
from .evaluate import cluster_scores, hungarian_mapping, mapped_scores, read_gold_csv, write_mapped_gold
from .run import discover_segments

__all__ = [
    "DiscoverConfig",
    "DiscoverProgress",
    "DiscoveryResult",
    "ProposedSegment",
    "cluster_scores",
    "discover_segments",
    "hungarian_mapping",
    "mapped_scores",
    "read_gold_csv",
    "write_mapped_gold",
]

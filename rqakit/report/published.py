"""Published nDCG@10 on BEIR SciFact test (300 queries): what a user could pick instead of the kit,
for a side table of the scifact report only. Each number is as its source prints it; the settings
differ (passage length, candidate depth, BM25 variant), so the rows are never compared cell by cell
with the kit's.
"""
from __future__ import annotations

import pandas as pd

COLLECTION = "beir/scifact"
COLUMNS = ("system", "kind", "nDCG@10", "setting", "source")
ROWS = (
    ("BM25, Pyserini flat", "lexical", 0.6789, "title + text in one field, top 1000",
     "pyserini/2cr/beir.yaml (bm25-flat); anserini regressions-beir-v1.0.0-scifact.flat"),
    ("BM25, Pyserini multifield", "lexical", 0.6647, "title and text fields, top 1000",
     "pyserini/2cr/beir.yaml (bm25-multifield)"),
    ("bge-small-en-v1.5", "dense, zero-shot", 0.7127, "MTEB SciFact test",
     "embeddings-benchmark/results, BAAI__bge-small-en-v1.5/SciFact.json"),
    ("e5-small-v2", "dense, zero-shot", 0.6885, "MTEB SciFact test",
     "embeddings-benchmark/results, intfloat__e5-small-v2/external/SciFact.json"),
    ("Contriever-msmarco", "dense, zero-shot", 0.6768, "flat index, top 1000",
     "pyserini/2cr/beir.yaml (contriever-msmarco)"),
    ("ColBERTv2", "late interaction, zero-shot", 0.693, "trained on MS MARCO",
     "Santhanam et al. 2022 (arXiv:2112.01488), Table 5(a)"),
    ("SPLADE++ (CoCondenser-EnsembleDistil)", "learned sparse, zero-shot", 0.7041, "top 1000",
     "pyserini/2cr/beir.yaml (splade-pp-ed)"),
    ("RocketQAv2 checkpoint (MS MARCO)", "dense, zero-shot", 0.568, "the official checkpoint, run by the ColBERTv2 authors",
     "Santhanam et al. 2022 (arXiv:2112.01488), Table 5(a)"),
    ("cross-encoder/ms-marco-MiniLM-L-6-v2 on BM25", "re-ranker", 0.688, "re-ranks BM25's top 100 (its BM25: 0.676)",
     "third-party model card juanluisdb/MiniLM-L-6-rerank-m3 (BEIR table)"),
    ("monoT5-base on BM25", "re-ranker", 0.734, "re-ranks BM25's top 100",
     "Sun et al. 2023, RankGPT (arXiv:2304.09542), Table 1"),
    ("BM25 + bge-base-en-v1.5, RRF", "fusion, zero-shot", 0.7420, "flat indexes, depth 1000, k = 60",
     "anserini docs/experiments-beir-fusion.md"),
    ("BM25 + bge-base-en-v1.5, min-max average", "fusion, zero-shot", 0.7472, "flat indexes, depth 1000",
     "anserini docs/experiments-beir-fusion.md"),
)
CAPTION = ("Published nDCG@10 on BEIR SciFact test, for orientation only: other models, passage lengths and "
           "candidate depths than this profile's, each as its source prints it; never compared cell by cell.")


def published_table(data_id: str) -> pd.DataFrame | None:
    """The side table for a profile whose test split is SciFact's, else None."""
    return pd.DataFrame(ROWS, columns=COLUMNS) if data_id.startswith(COLLECTION) else None

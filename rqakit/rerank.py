"""Re-ranking: the cross encoder re-scores the top N of each query of any run.

As in the paper's re-ranking evaluation (Table 3: top 50 of a retriever; the official
`run_reranking.sh` writes one raw CE logit per pair), the candidates are the N best documents of
each query by run score and the new run holds those N with their s_ce logits; documents below N
are dropped. All pairs of all queries are scored in one length-sorted pass (`encode.score_pairs`).

A `ScoreCache` keeps scores by (model tag, query id, doc id) so re-ranking the same pairs with
the same model again costs nothing; the default tag is a fingerprint of the model's weights and
settings, so a changed model never reads a stale score.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rqakit.atomic import atomic_path
from rqakit.encode import Throughput, score_pairs
from rqakit.errors import RqaError
from rqakit.models.cross_encoder import CrossEncoder
from rqakit.runs import Run, ranked
from rqakit.runtime import compute_dtype as runtime_compute_dtype
from rqakit.runtime import dtype_name

CacheKey = tuple[str, str, str]  # (model tag, query id, doc id)


class ScoreCache:
    """Cross-encoder scores keyed by (model tag, query id, doc id), saved as a parquet file."""

    COLUMNS = ("model", "qid", "doc_id", "score")

    def __init__(self, path: str | os.PathLike | None = None):
        """Load `path` when it exists; save() writes there."""
        self.path = None if path is None else Path(path)
        self.scores: dict[CacheKey, float] = {}
        if self.path is not None and self.path.is_file():
            table = pd.read_parquet(self.path)
            keys = zip(table["model"].astype(str), table["qid"].astype(str), table["doc_id"].astype(str))
            self.scores = dict(zip(keys, table["score"].astype(float)))

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self.scores

    def get(self, key: CacheKey) -> float | None:
        return self.scores.get(key)

    def update(self, scores: Mapping[CacheKey, float]) -> None:
        self.scores.update({key: float(value) for key, value in scores.items()})

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write all scores to `path` (default: the load path), via a temporary file and a rename."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise RqaError("ScoreCache.save needs a path: give one here or when creating the cache")
        rows = [(*key, value) for key, value in self.scores.items()]
        table = pd.DataFrame(rows, columns=list(self.COLUMNS)).astype(
            {"model": str, "qid": str, "doc_id": str, "score": "float64"}
        )
        with atomic_path(target) as partial:
            table.to_parquet(partial, index=False)
        return target


def model_tag(cross_encoder: CrossEncoder, use_titles: bool | None = None, compute_dtype=None) -> str:
    """Fingerprint of what decides a score: weights, settings, compute dtype, and whether the
    corpus hands out titles (`Corpus.use_titles`; None when unknown)."""
    digest = hashlib.sha1()
    settings = {**cross_encoder.options()}
    if use_titles is not None:
        settings["use_titles"] = bool(use_titles)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in cross_encoder.state_dict().items():
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    compute_dtype = compute_dtype or runtime_compute_dtype(cross_encoder.device)
    return f"{digest.hexdigest()[:16]}-{dtype_name(compute_dtype)}"


def _fetch_docs(corpus, pairs: list[tuple[str, str]]) -> dict:
    docs = {}
    for qid, doc_id in pairs:
        if doc_id in docs:
            continue
        try:
            docs[doc_id] = corpus.get(doc_id)
        except KeyError:
            raise RqaError(f"doc id {doc_id!r} (run of query {qid!r}) is not in the corpus") from None
    return docs


def rerank(
    cross_encoder: CrossEncoder,
    run: Mapping[str, Mapping[str, float]],
    queries: Mapping[str, str],
    corpus,
    top_n: int = 30,
    *,
    batch_size: int = 64,
    compute_dtype: torch.dtype | None = None,
    cache: ScoreCache | None = None,
    tag: str | None = None,
    stats: Throughput | None = None,
    progress: bool = True,
) -> Run:
    """Re-score each query's top_n documents by run score -> {qid: {doc_id: s_ce}}, best first.

    corpus: anything with get(doc_id) -> Doc. cache: reuse and store scores under `tag`
    (default model_tag(cross_encoder, corpus.use_titles, compute_dtype)); the caller saves it.
    """
    if top_n < 1:
        raise RqaError(f"top_n must be at least 1, got {top_n}")
    missing = next((qid for qid in run if qid not in queries), None)
    if missing is not None:
        raise RqaError(f"query {missing!r} of the run has no text in the queries given to rerank")
    candidates = {qid: [doc_id for doc_id, _ in ranked(ranking)[:top_n]] for qid, ranking in run.items()}
    if cache is not None and tag is None:
        tag = model_tag(cross_encoder, getattr(corpus, "use_titles", None), compute_dtype)
    known = {} if cache is None else {
        (qid, doc_id): cache.get((tag, qid, doc_id))
        for qid, doc_ids in candidates.items() for doc_id in doc_ids if (tag, qid, doc_id) in cache
    }
    todo = [(qid, doc_id) for qid, doc_ids in candidates.items() for doc_id in doc_ids if (qid, doc_id) not in known]
    docs = _fetch_docs(corpus, todo)
    scores = score_pairs(
        cross_encoder, [queries[qid] for qid, _ in todo], [docs[doc_id] for _, doc_id in todo],
        batch_size=batch_size, compute_dtype=compute_dtype, stats=stats, progress=progress,
    )
    fresh = dict(zip(todo, np.asarray(scores, dtype=np.float64).tolist()))
    if cache is not None:
        cache.update({(tag, qid, doc_id): score for (qid, doc_id), score in fresh.items()})
    all_scores = {**known, **fresh}
    return {
        qid: dict(ranked({d: all_scores[(qid, d)] for d in doc_ids}))
        for qid, doc_ids in candidates.items()
    }

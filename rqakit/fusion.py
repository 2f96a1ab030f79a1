"""Fusion of two or more runs: reciprocal rank fusion and per-query score interpolation
(the hybrid BM25 + dense rows of the report)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from rqakit.errors import RqaError
from rqakit.runs import Run, ranked


def reciprocal_rank_fusion(runs: Sequence[Mapping[str, Mapping[str, float]]], k: float = 60,
                           weights: Sequence[float] | None = None) -> Run:
    """RRF (Cormack et al., 2009): score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1.

    A document absent from a run adds nothing for that run. Ranks come from ``ranked``.
    """
    if not runs:
        raise RqaError("reciprocal_rank_fusion needs at least one run")
    weights = [1.0] * len(runs) if weights is None else list(weights)
    if len(weights) != len(runs):
        raise RqaError(f"got {len(weights)} weights for {len(runs)} runs; pass one weight per run")
    if k < 0:
        raise RqaError(f"RRF constant k must be >= 0, got {k}")
    fused: dict[str, dict[str, float]] = {}
    for run, weight in zip(runs, weights):
        for qid, docs in run.items():
            scores = fused.setdefault(qid, {})
            for rank, (doc_id, _) in enumerate(ranked(docs), start=1):
                scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    return {qid: dict(ranked(scores)) for qid, scores in fused.items()}


def _min_max(doc_scores: Mapping[str, float]) -> dict[str, float]:
    """Per-query min-max scaling to [0, 1]; a query whose documents all tie scores 1."""
    if not doc_scores:
        return {}
    low, high = min(doc_scores.values()), max(doc_scores.values())
    if high == low:
        return {doc_id: 1.0 for doc_id in doc_scores}
    return {doc_id: (score - low) / (high - low) for doc_id, score in doc_scores.items()}


def interpolate(run_a: Mapping[str, Mapping[str, float]], run_b: Mapping[str, Mapping[str, float]],
                weight_a: float, normalize: str | None = "minmax") -> Run:
    """Score fusion: weight_a * a(d) + (1 - weight_a) * b(d) per query.

    normalize "minmax" scales each run's scores per query to [0, 1] first, and a document missing
    from a run gets that run's normalised minimum, 0. With None, raw scores are mixed and a missing
    document gets the run's lowest score for the query.
    """
    if not 0.0 <= weight_a <= 1.0:
        raise RqaError(f"weight_a must be in [0, 1], got {weight_a}")
    if normalize not in ("minmax", None):
        raise RqaError(f"normalize must be 'minmax' or None, got {normalize!r}")
    fused: Run = {}
    for qid in dict.fromkeys([*run_a, *run_b]):
        a, b = run_a.get(qid, {}), run_b.get(qid, {})
        if normalize == "minmax":
            a, b = _min_max(a), _min_max(b)
            floor_a = floor_b = 0.0
        else:
            floor_a, floor_b = min(a.values(), default=0.0), min(b.values(), default=0.0)
        scores = {doc_id: weight_a * a.get(doc_id, floor_a) + (1.0 - weight_a) * b.get(doc_id, floor_b)
                  for doc_id in dict.fromkeys([*a, *b])}
        fused[qid] = dict(ranked(scores))
    return fused

"""Stage `augment`: hybrid data augmentation (§2), mined with the warm retriever, denoised by the
warm re-ranker.

1. the warm dual encoder's top `retrieve_depth` for every training query (faiss, from `warmup_de`);
2. the warm cross-encoder scores the first `score_depth` of them and the labelled positives, in
   length-sorted batches;
3. logits become probabilities (`augment.calibration`: Platt scaling fitted on the labelled pairs,
   weighted to the positive rate `augment.calibration_prior`, since a listwise-trained CE's logits
   are no probabilities and v1's 0.1 / 0.9 were set on a classifier trained at 1:4; `sigmoid` for a
   pointwise CE, `rank` for thresholds by CE rank; the walkthrough compares them on one slice);
4. `rqakit.mining.build_lists` writes undenoised and denoised lists of m (positive at index 0).

Writes `lists.parquet`, `candidates.parquet` (every scored pair with its fate), `summary.json`,
`calibration.json`, and, where the collection knows the relevant passages its qrels miss
(`Split.annotations`, e.g. `rqakit/toy`), `denoising.json`: precision and recall against them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..encode import Throughput, score_pairs
from ..mining import Calibrator, DenoiseRule, build_lists, denoising_quality, labelled_pairs, write_lists
from ..models import CrossEncoder
from . import teacher
from .common import answer_bearing, warm_retriever_ranking, write_json
from .workspace import SPLITS, Workspace

NEEDS = ("warmup_de", "warmup_ce")
READS = (*SPLITS, "data.answer_free_negatives", "augment")


SCORE_CHUNK = 200_000   # pairs whose passages are fetched, length-sorted and scored together


def score_window(cross_encoder, split, candidates: dict[str, list[str]], corpus, *, score_depth: int,
                 batch_size: int, stats: Throughput | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    """The cross-encoder's logits on each query's first `score_depth` candidates and on its labelled
    positives, in length-sorted passes of `SCORE_CHUNK` pairs (only their passages are held: MS
    MARCO's window is 25.6M pairs): qid -> {doc id: logit}."""
    pairs = []
    for qid in sorted(candidates):
        pairs += [(qid, d) for d in dict.fromkeys(candidates[qid][:score_depth] + split.positives(qid))]
    logits = np.zeros(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), SCORE_CHUNK):
        chunk = pairs[start:start + SCORE_CHUNK]
        logits[start:start + len(chunk)] = score_pairs(
            cross_encoder, [split.queries[q] for q, _ in chunk], corpus.get_many([d for _, d in chunk]),
            batch_size=batch_size, stats=stats, progress=progress)
    return by_query([q for q, _ in pairs], [d for _, d in pairs], logits)


def by_query(qids, docs, logits) -> dict[str, dict[str, float]]:
    """Parallel sequences of (query id, doc id, logit) -> qid -> {doc id: logit}."""
    scores: dict[str, dict[str, float]] = {}
    for qid, doc, logit in zip(qids, docs, logits):
        scores.setdefault(qid, {})[doc] = float(logit)
    return scores


def retrieve_candidates(ws: Workspace, wde: Path) -> dict[str, list[str]]:
    """Step 1: the warm retriever's top `retrieve_depth` per training query: qid -> doc ids, rank order."""
    a = ws.cfg.augment
    ranking = warm_retriever_ranking(wde, ws.train.queries, a.retrieve_depth, ws.cfg.evaluate.batch_size)
    return {q: ranking[q] for q in sorted(ws.train.queries)}


def stored_scores(folder: Path) -> dict[str, dict[str, float]]:
    """The warm cross-encoder's logits a finished `augment` stage kept: qid -> {doc id: logit}."""
    frame = pd.read_parquet(Path(folder) / "candidates.parquet", columns=["query_id", "doc_id", "ce_score"])
    return by_query(frame.query_id, frame.doc_id, frame.ce_score)


def score_candidates(ws: Workspace, wde: Path, wce: Path, stats: Throughput | None = None):
    """Steps 1-2: the warm retriever's top `retrieve_depth` per training query (rank order) and the
    warm cross-encoder's logits on the first `score_depth` of them and on the labelled positives.

    Returns (candidates: qid -> doc ids, ce_scores: qid -> {doc id: logit}, the cross-encoder).
    """
    a, batch_size = ws.cfg.augment, ws.cfg.evaluate.batch_size
    candidates = retrieve_candidates(ws, wde)
    ce = CrossEncoder.from_pretrained(Path(wce) / "model")
    ce_scores = score_window(ce, ws.train, candidates, ws.corpus, score_depth=a.score_depth, batch_size=batch_size,
                             stats=stats)
    return candidates, ce_scores, ce


def run(ws: Workspace, force: bool = False, log=print) -> Path:
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes

    a = ws.cfg.augment
    wde, wce = ws.upstream("augment", log).values()
    teacher.check(ws, log=log)   # says so, with the numbers, where the re-ranker that denoises does not lead

    def build(tmp: Path) -> dict:
        stats = Throughput()
        candidates, ce_scores, ce = score_candidates(ws, wde, wce, stats)
        calibrator = Calibrator(a.calibration, prior=a.calibration_prior)
        calibrator.fit(*labelled_pairs(ws.train, ce_scores))
        bearing = answer_bearing(ws, candidates)  # NQ: passages with an answer are no negatives
        rule = DenoiseRule.of(a)
        lists, summary = build_lists(ws.train, candidates, ce_scores, list_size=a.list_size, calibrator=calibrator,
                                     rule=rule, seed=a.seed, answer_bearing=bearing)
        write_lists(lists, tmp / "lists.parquet")
        dropped, pseudo = summary.pop("dropped"), summary.pop("pseudo")
        cand = pd.DataFrame([(q, d, s) for q, ds in ce_scores.items() for d, s in ds.items()],
                            columns=["query_id", "doc_id", "ce_score"])
        cand["labelled"] = [d in ws.train.qrels.get(q, {}) and ws.train.qrels[q][d] > 0
                            for q, d in zip(cand.query_id, cand.doc_id)]
        cand["prob"] = calibrator(cand.ce_score.to_numpy()) if calibrator.gives_probabilities else np.nan
        drop_set = {(q, d) for q, ds in dropped.items() for d in ds}
        pseudo_set = {(q, d) for q, ds in pseudo.items() for d in ds}
        bearing_set = {(q, d) for q, ds in (bearing or {}).items() for d in ds}
        cand["fate"] = ["positive" if lab else "pseudo-positive" if (q, d) in pseudo_set
                        else "dropped" if (q, d) in drop_set else "contains an answer" if (q, d) in bearing_set
                        else "negative"
                        for q, d, lab in zip(cand.query_id, cand.doc_id, cand.labelled)]
        cand.to_parquet(tmp / "candidates.parquet")
        write_json(tmp / "calibration.json", calibrator.to_dict())
        summary["scoring"] = stats.as_dict()
        unlabelled = ws.train.annotations.get("unlabelled")
        if unlabelled is not None:  # the collection knows the relevant passages its qrels miss
            window = {q: docs[: a.score_depth] for q, docs in candidates.items()}
            quality = denoising_quality(dropped, pseudo, {q: set(d) for q, d in unlabelled.items()}, window)
            write_json(tmp / "denoising.json", quality)
            summary["denoising_quality"] = quality
        write_json(tmp / "summary.json", summary)
        log(f"[augment] {summary.get('lists')} lists; {summary.get('pseudo_positives')} pseudo positives; "
            f"{summary.get('dropped_as_false_negative')} dropped; CE {summary['scoring'].get('tokens_per_s', 0):.0f} tokens/s")
        return {"summary": summary}

    return ws.build(ws.folder("augment"), ws.hash("augment"), build, force=force, every_rank=False, log=log)

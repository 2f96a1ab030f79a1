"""Denoising and list building: hybrid data augmentation (RocketQAv2 §4.3; rules of RocketQA v1
`data_process/`), model-free.

Inputs are plain data: the retriever's top-n per training query (`candidates`, rank order) and
the cross-encoder's logits on the first `score_depth` of them (`ce_scores`). Two lists of m
passages are built per query with a labelled positive, positive at index 0 (official code):

- undenoised ("rand" in the released data): the ground-truth positive + m-1 negatives sampled
  uniformly from the top-n, labelled positives excluded;
- denoised ("aug"): negatives are the scored candidates the CE calls negative (calibrated
  probability < neg_threshold, v1: 0.1), likely false negatives are dropped, and the positive is
  a CE-confident unlabelled candidate (> pos_threshold, v1: 0.9) when there is one.

`method="rank"` replaces probabilities with CE ranks for a listwise CE whose logits have no
absolute scale.

On an open-domain QA set (NQ), a retrieved passage that contains a gold answer (DPR's
has_answer, `answer_bearing`) is never a negative in either kind of list, as in DPR's data and
RocketQA's `construct_nq_train_de.py`; it may still lead a denoised list as a pseudo-positive.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rqakit.config import check_list_size, check_thresholds
from rqakit.data.collection import Split
from rqakit.errors import RqaError
from rqakit.evaluation import has_answer

from .calibration import Calibrator, labelled_pairs
from .files import LIST_COLUMNS, LIST_KINDS

_DEEPER = "retrieve deeper: augment.retrieve_depth, or lower the list size"


@dataclass(frozen=True)
class DenoiseRule:
    """How the warm re-ranker's scores judge the unlabelled candidates of a query (RocketQA's
    denoising, `augment.*`): of the first `score_depth` retrieved, a calibrated probability below
    `neg_threshold` makes a negative and above `pos_threshold` a pseudo-positive (at most
    `max_pseudo_positives`; the rest in between are dropped as likely false negatives); without
    probabilities (`rank` calibration) the CE's ranks from `rank_keep_from` on are negatives."""

    neg_threshold: float = 0.1
    pos_threshold: float = 0.9
    rank_keep_from: int = 10
    max_pseudo_positives: int = 1
    score_depth: int = 50

    @classmethod
    def of(cls, augment) -> "DenoiseRule":
        """The rule an `AugmentConfig` sets."""
        return cls(augment.neg_threshold, augment.pos_threshold, augment.rank_keep_from, augment.max_pseudo_positives,
                   augment.score_depth)

    def check(self) -> None:
        check_thresholds(self.neg_threshold, self.pos_threshold, prefix="")
        if self.score_depth < 1 or self.rank_keep_from < 0 or self.max_pseudo_positives < 0:
            raise RqaError(f"score_depth ({self.score_depth}) must be >= 1, rank_keep_from ({self.rank_keep_from}) and "
                           f"max_pseudo_positives ({self.max_pseudo_positives}) >= 0")


# ---------------------------------------------------------------------------------------------
# Per-query rules
# ---------------------------------------------------------------------------------------------

@dataclass
class _QueryView:
    """One training query: its labelled positives, top-n candidates and scored window."""

    qid: str
    positive: str                 # ground-truth positive: highest grade, then smallest id
    labelled: set[str]            # every labelled positive (never a negative)
    candidates: list[str]         # top-n, rank order, de-duplicated
    scored: list[str]             # candidates[:score_depth]
    logits: dict[str, float]      # CE logit of every scored doc (the scored window at least)
    answer_bearing: set[str] = field(default_factory=set)   # unlabelled, contain an answer: no negatives

    def can_be_negative(self, doc_id: str) -> bool:
        return doc_id not in self.labelled and doc_id not in self.answer_bearing

    @property
    def unlabelled_pool(self) -> list[str]:
        return [d for d in self.candidates if self.can_be_negative(d)]

    @property
    def beyond_window_pool(self) -> list[str]:
        return [d for d in self.candidates[len(self.scored):] if self.can_be_negative(d)]


@dataclass
class _Denoising:
    """Outcome of the denoising rule for one query."""

    negatives: list[str]          # scored, unlabelled, called negative by the CE
    pseudo: list[str]             # chosen pseudo-positives, most confident first
    dropped: list[str]            # scored, unlabelled, neither negative nor chosen: likely false negatives


def _ground_truth_positive(grades: dict[str, int]) -> str:
    """Highest-graded labelled positive; ties go to the first id in sorted order."""
    return min((d for d, g in grades.items() if g >= 1), key=lambda d: (-grades[d], d))


def _denoise_by_probability(view: _QueryView, probs: dict[str, float], neg_threshold: float,
                            pos_threshold: float, max_pseudo: int) -> _Denoising:
    """v1 rule (`construct_marco_train_de.py`, `construct_unlabel_train_de.py`).

    negatives: unlabelled, prob < neg_threshold; pseudo-positives: unlabelled, prob > pos_threshold,
    highest first (ties: retrieval order), at most max_pseudo; the other unlabelled ones are dropped.
    """
    unlabelled = [d for d in view.scored if d not in view.labelled]
    confident = sorted((d for d in unlabelled if probs[d] > pos_threshold), key=lambda d: -probs[d])
    pseudo = confident[:max_pseudo]
    negatives = [d for d in unlabelled if probs[d] < neg_threshold]
    dropped = [d for d in unlabelled if probs[d] >= neg_threshold and d not in pseudo]
    return _Denoising(negatives, pseudo, dropped)


def _ce_ranks(view: _QueryView) -> dict[str, int]:
    """0-based rank of every scored candidate by CE logit (ties: retrieval order)."""
    order = sorted(range(len(view.scored)), key=lambda i: -view.logits[view.scored[i]])
    return {view.scored[i]: rank for rank, i in enumerate(order)}


def _denoise_by_rank(view: _QueryView, rank_keep_from: int, max_pseudo: int) -> _Denoising:
    """Rank rule for a listwise CE: negatives are unlabelled candidates ranked >= rank_keep_from.

    Pseudo-positives: unlabelled candidates scored strictly above every scored labelled positive,
    best first, at most max_pseudo (for 1: the CE's top-1, if unlabelled and above the labelled
    positive); none when no labelled positive was scored. Other unlabelled candidates ranked
    above rank_keep_from are dropped.
    """
    ranks = _ce_ranks(view)
    unlabelled = [d for d in view.scored if d not in view.labelled]
    labelled_logits = [view.logits[d] for d in view.scored if d in view.labelled]
    pseudo = []
    if labelled_logits:
        best_labelled = max(labelled_logits)
        above = sorted((d for d in unlabelled if view.logits[d] > best_labelled), key=ranks.get)
        pseudo = above[:max_pseudo]
    negatives = [d for d in unlabelled if ranks[d] >= rank_keep_from and d not in pseudo]
    dropped = [d for d in unlabelled if ranks[d] < rank_keep_from and d not in pseudo]
    return _Denoising(negatives, pseudo, dropped)


def _query_rng(seed: int, qid: str, stream: int) -> np.random.Generator:
    """A generator fixed by (seed, query id, stream): lists do not depend on query order."""
    qid_key = int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, qid_key, stream]))


def _sample(pool: list[str], k: int, rng: np.random.Generator) -> list[str]:
    """k distinct items of pool, uniformly, in sampled order."""
    picks = rng.choice(len(pool), size=k, replace=False) if k else []
    return [pool[i] for i in picks]


def _list_row(view: _QueryView, kind: str, positive: str, negatives: list[str], source: str,
              fallback: bool) -> dict:
    doc_ids = [positive, *negatives]
    return {
        "query_id": view.qid,
        "kind": kind,
        "doc_ids": doc_ids,
        "labels": [1] + [0] * len(negatives),
        "ce_scores": [float(view.logits.get(d, math.nan)) for d in doc_ids],
        "positive_source": source,
        "fallback": fallback,
    }


def _undenoised_list(view: _QueryView, list_size: int, seed: int) -> dict:
    """Ground-truth positive + m-1 negatives sampled uniformly from the top-n ("rand" lists)."""
    negatives = _sample(view.unlabelled_pool, list_size - 1, _query_rng(seed, view.qid, 0))
    return _list_row(view, "undenoised", view.positive, negatives, "qrels", False)


def _denoised_negatives(view: _QueryView, denoising: _Denoising, n_needed: int,
                        rng: np.random.Generator) -> tuple[list[str] | None, bool]:
    """m-1 denoised negatives; if too few, filled from pids[score_depth:] (v1 fallback).

    Returns (negatives, used_fallback); negatives is None when even the fill is too short.
    """
    pool = [d for d in denoising.negatives if d not in denoising.pseudo]
    if len(pool) >= n_needed:
        return _sample(pool, n_needed, rng), False
    beyond = view.beyond_window_pool
    shortfall = n_needed - len(pool)
    if len(beyond) < shortfall:
        return None, True
    return _sample(pool, len(pool), rng) + _sample(beyond, shortfall, rng), True


def _denoised_lists(view: _QueryView, denoising: _Denoising, list_size: int, seed: int) -> list[dict] | None:
    """One "aug" list per pseudo-positive (or one around the ground-truth positive when none)."""
    positives = [(p, "pseudo") for p in denoising.pseudo] or [(view.positive, "qrels")]
    rows = []
    for stream, (positive, source) in enumerate(positives, start=1):
        negatives, fallback = _denoised_negatives(view, denoising, list_size - 1, _query_rng(seed, view.qid, stream))
        if negatives is None:
            return None
        rows.append(_list_row(view, "denoised", positive, negatives, source, fallback))
    return rows


def answer_bearing(candidates: dict[str, list[str]], answers: dict[str, list[str]],
                   passage_texts) -> dict[str, set[str]]:
    """qid -> the candidates whose text contains one of the query's gold answers (DPR has_answer).

    passage_texts(doc_ids) -> texts without titles (DPR matches the text). Queries without answers
    get an empty set.
    """
    out = {}
    for qid, docs in candidates.items():
        strings = answers.get(qid) or []
        docs = list(dict.fromkeys(docs))
        texts = passage_texts(docs) if strings and docs else []
        out[qid] = {d for d, text in zip(docs, texts) if has_answer(text, strings)}
    return out


# ---------------------------------------------------------------------------------------------
# build_lists
# ---------------------------------------------------------------------------------------------

def _check_settings(list_size: int, rule: DenoiseRule, calibrator: Calibrator) -> None:
    rule.check()
    check_list_size("list_size", list_size)
    if not isinstance(calibrator, Calibrator):
        raise RqaError(f"calibrator must be a Calibrator, got {type(calibrator).__name__}")
    if not calibrator.is_fitted:
        raise RqaError("Platt calibrator is not fitted: call fit(logits, labels) on labelled candidate pairs first")


def _query_views(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]],
                 score_depth: int, answer_bearing: dict[str, set[str]] | None = None) -> tuple[list[_QueryView], int]:
    """Views of the queries with a labelled positive (split order) and the count of those without."""
    unknown = [q for q in candidates if q not in split.queries]
    if unknown:
        raise RqaError(f"{len(unknown)} candidate queries (e.g. {unknown[0]!r}) are not in split "
                       f"{split.name or split.dataset_id!r}; retrieve for this split's queries")
    views, without_positive = [], 0
    for qid in (q for q in split.queries if q in candidates):
        grades = split.qrels.get(qid, {})
        if not split.positives(qid):
            without_positive += 1
            continue
        ranked = list(dict.fromkeys(candidates[qid]))
        scored = ranked[:score_depth]
        logits = ce_scores.get(qid, {})
        bearing = set((answer_bearing or {}).get(qid, ())) - set(split.positives(qid))
        views.append(_QueryView(qid, _ground_truth_positive(grades), set(split.positives(qid)), ranked,
                                scored, {d: float(s) for d, s in logits.items()}, bearing))
    return views, without_positive


def _check_inputs(views: list[_QueryView], list_size: int, score_depth: int) -> None:
    """Every scored window has CE scores, and every query has m-1 usable candidates."""
    unscored = [v.qid for v in views if any(d not in v.logits for d in v.scored)]
    if unscored:
        raise RqaError(f"{len(unscored)} queries (e.g. {unscored[0]!r}) lack CE scores for some of their first "
                       f"{score_depth} candidates; score the same window (augment.score_depth)")
    short = [v.qid for v in views if len(v.unlabelled_pool) < list_size - 1]
    if short:
        raise RqaError(f"list size m={list_size} needs {list_size - 1} negatives but {len(short)} queries have "
                       f"fewer than {list_size - 1} usable candidates ({_DEEPER})")


def _denoise(view: _QueryView, calibrator: Calibrator, rule: DenoiseRule) -> _Denoising:
    if not calibrator.gives_probabilities:
        denoising = _denoise_by_rank(view, rule.rank_keep_from, rule.max_pseudo_positives)
    else:
        scored_logits = np.array([view.logits[d] for d in view.scored], dtype=np.float64)   # (n_scored,)
        probs = dict(zip(view.scored, calibrator(scored_logits).tolist()))
        denoising = _denoise_by_probability(view, probs, rule.neg_threshold, rule.pos_threshold, rule.max_pseudo_positives)
    if view.answer_bearing:  # never negatives; neither counted as dropped false negatives
        denoising.negatives = [d for d in denoising.negatives if d not in view.answer_bearing]
        denoising.dropped = [d for d in denoising.dropped if d not in view.answer_bearing]
    return denoising


def build_lists(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]], *,
                list_size: int, calibrator: Calibrator, rule: DenoiseRule = DenoiseRule(), seed: int = 0,
                answer_bearing: dict[str, set[str]] | None = None) -> tuple[pd.DataFrame, dict]:
    """Undenoised + denoised training lists of m passages, positive at index 0.

    candidates: qid -> top-n doc ids in retrieval order; ce_scores: qid -> {doc id: CE logit} for
    (at least) candidates[qid][:rule.score_depth]. The queries of `candidates` are used, in split
    order; those without a labelled positive are skipped (never turned into all-negative lists).
    rule.max_pseudo_positives: 0 disables pseudo-positives, 1 is v1 (the single most confident);
    k > 1 builds up to k denoised lists, one per pseudo-positive. answer_bearing: qid -> candidates that
    contain a gold answer (`answer_bearing()`); they are never negatives (NQ).

    Returns (lists, summary): lists has LIST_COLUMNS, one row per list, undenoised lists first then
    denoised ones (the released file is rand + aug); summary has `lists` (count per kind),
    queries_used, queries_without_positive, pseudo_positives, dropped_as_false_negative,
    fallback_lists, and `dropped` / `pseudo` (qid -> doc ids) for `denoising_quality`; with
    answer_bearing also `answer_bearing_candidates` (unlabelled top-n passages kept out as such).
    """
    _check_settings(list_size, rule, calibrator)
    views, without_positive = _query_views(split, candidates, ce_scores, rule.score_depth, answer_bearing)
    _check_inputs(views, list_size, rule.score_depth)
    undenoised, denoised, dropped, pseudo, too_short = [], [], {}, {}, []
    for view in views:
        undenoised.append(_undenoised_list(view, list_size, seed))
        denoising = _denoise(view, calibrator, rule)
        rows = _denoised_lists(view, denoising, list_size, seed)
        if rows is None:
            too_short.append(view.qid)
            continue
        denoised.extend(rows)
        dropped[view.qid], pseudo[view.qid] = denoising.dropped, denoising.pseudo
    if too_short:
        raise RqaError(f"{len(too_short)} queries (e.g. {too_short[0]!r}) have fewer than {list_size - 1} denoised "
                       f"negatives even after filling from beyond the scored window ({_DEEPER})")
    lists = pd.DataFrame(undenoised + denoised, columns=list(LIST_COLUMNS))
    summary = _summary(lists, len(views), without_positive, dropped, pseudo)
    if answer_bearing is not None:
        summary["answer_bearing_candidates"] = sum(len(v.answer_bearing & set(v.candidates)) for v in views)
    return lists, summary


def denoise(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]], *,
            calibrator: Calibrator, rule: DenoiseRule = DenoiseRule(),
            answer_bearing: dict[str, set[str]] | None = None) -> dict[str, dict[str, list[str]]]:
    """The denoising decision `build_lists` takes for every query, without building lists.

    Same inputs and rule as `build_lists` (the scored window candidates[qid][:rule.score_depth], labelled
    positives never judged). Returns qid -> {"negatives", "pseudo", "dropped"}: doc ids the CE calls
    negative, the pseudo-positives chosen, and the likely false negatives dropped. Queries without a
    labelled positive are left out, as `build_lists` leaves them out.
    """
    _check_settings(2, rule, calibrator)
    views, _ = _query_views(split, candidates, ce_scores, rule.score_depth, answer_bearing)
    unscored = [v.qid for v in views if any(d not in v.logits for d in v.scored)]
    if unscored:
        raise RqaError(f"{len(unscored)} queries (e.g. {unscored[0]!r}) lack CE scores for some of their first "
                       f"{rule.score_depth} candidates; score the same window (augment.score_depth)")
    out = {}
    for view in views:
        d = _denoise(view, calibrator, rule)
        out[view.qid] = {"negatives": d.negatives, "pseudo": d.pseudo, "dropped": d.dropped}
    return out


def calibration_settings(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]], *,
                         rule: DenoiseRule = DenoiseRule(), prior: float | None = 0.2,
                         answer_bearing: dict[str, set[str]] | None = None) -> dict[str, dict]:
    """What each calibration makes of the same CE scores: pseudo-positives, denoised negatives and
    dropped candidates (totals over queries), and for probabilities the logits where 0.1 / 0.9 fall.

    Settings: platt at `prior`, platt balanced (0.5), platt at the scored pairs' own positive rate
    (the fit that moves with the window), sigmoid (the CE's own two-class probability) and rank.
    A setting that cannot be fitted reports its error.
    """
    views, _ = _query_views(split, candidates, ce_scores, rule.score_depth, answer_bearing)
    pairs = labelled_pairs(split, ce_scores)
    settings = {f"platt, prior {p}": Calibrator("platt", prior=p) for p in dict.fromkeys([prior, 0.5]) if p is not None}
    settings.update({"platt, pairs' own rate": Calibrator("platt"), "sigmoid": Calibrator("sigmoid"),
                     "rank": Calibrator("rank")})
    out = {}
    for name, calibrator in settings.items():
        try:
            calibrator.fit(*pairs)
        except RqaError as exc:
            out[name] = {"error": str(exc)}
            continue
        counts = {"pseudo_positives": 0, "denoised_negatives": 0, "dropped_as_false_negative": 0}
        for view in views:
            denoising = _denoise(view, calibrator, rule)
            counts["pseudo_positives"] += len(denoising.pseudo)
            counts["denoised_negatives"] += len(denoising.negatives)
            counts["dropped_as_false_negative"] += len(denoising.dropped)
        if calibrator.gives_probabilities:
            counts[f"logit_at_{rule.neg_threshold}"] = calibrator.logit_at(rule.neg_threshold)
            counts[f"logit_at_{rule.pos_threshold}"] = calibrator.logit_at(rule.pos_threshold)
        out[name] = counts
    return out


def _summary(lists: pd.DataFrame, queries_used: int, without_positive: int,
             dropped: dict[str, list[str]], pseudo: dict[str, list[str]]) -> dict:
    return {
        "lists": {kind: int((lists["kind"] == kind).sum()) for kind in LIST_KINDS},
        "queries_used": queries_used,
        "queries_without_positive": without_positive,
        "pseudo_positives": int((lists["positive_source"] == "pseudo").sum()),
        "dropped_as_false_negative": sum(len(v) for v in dropped.values()),
        "fallback_lists": int(lists["fallback"].sum()),
        "dropped": dropped,
        "pseudo": pseudo,
    }


# ---------------------------------------------------------------------------------------------
# Denoising quality against known unlabelled positives
# ---------------------------------------------------------------------------------------------

def _precision_recall(flagged: dict[str, list[str]], truth: dict[str, set[str]]) -> dict:
    n_flagged = sum(len(set(flagged.get(q, ()))) for q in truth)
    n_true = sum(len(set(flagged.get(q, ())) & truth[q]) for q in truth)
    n_truth = sum(len(t) for t in truth.values())
    return {
        "flagged": n_flagged,
        "true": n_true,
        "precision": n_true / n_flagged if n_flagged else math.nan,
        "recall": n_true / n_truth if n_truth else math.nan,
    }


def denoising_quality(dropped: dict[str, list[str]], pseudo: dict[str, list[str]],
                      unlabeled_positives: dict[str, set[str]], candidates_scored: dict[str, list[str]]) -> dict:
    """Precision and recall of the denoising against positives known to be missing from the qrels.

    Micro-averaged over the queries of candidates_scored (qid -> the scored window,
    candidates[:score_depth]); recall counts only unlabelled positives inside that window.
    Returns {"dropped": {...}, "pseudo": {...}, "kept_out": {...}, "unlabeled_positives_in_window": n},
    each {...} = {flagged, true, precision, recall}; kept_out = dropped or pseudo (never a negative).
    Precision / recall are NaN when their denominator is 0.
    """
    truth = {q: set(unlabeled_positives.get(q, ())) & set(window) for q, window in candidates_scored.items()}
    kept_out = {q: list(dropped.get(q, ())) + list(pseudo.get(q, ())) for q in truth}
    return {
        "dropped": _precision_recall(dropped, truth),
        "pseudo": _precision_recall(pseudo, truth),
        "kept_out": _precision_recall(kept_out, truth),
        "unlabeled_positives_in_window": sum(len(t) for t in truth.values()),
    }


"""Retrieval and re-ranking metrics: MS MARCO measures via ir_measures, NQ answers as in DPR.

A run is ``dict[str, dict[str, float]]`` (query id -> {doc id -> score}, higher is better) and qrels
are ``dict[str, dict[str, int]]`` (query id -> {doc id -> relevance}), as ir_measures accepts.

Averaging follows the official ``msmarco_eval.py``: the mean is over every query with at least one
relevant document in the qrels, and a judged query absent from the run scores 0. Queries in the run
but not in the qrels are ignored.

A split with gold answers (NQ, TriviaQA in dpr-w100) is scored by answers, as the official
``nq_eval.py``: :func:`answer_qrels` judges every retrieved passage by DPR's :func:`has_answer`
and the mean is over every question with an answer string (:func:`judgements` picks the mode).
``Success@k`` is then the paper's NQ R@k (DPR's top-k accuracy) and ``RR@10`` the official
re-ranking script's MRR@10; measures that need every relevant passage of the collection (nDCG,
R) see only the retrieved ones.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence

import ir_measures
import numpy as np
import pandas as pd
import regex
from scipy import stats

from rqakit.errors import RqaError
from rqakit.types import Run

Qrels = Mapping[str, Mapping[str, int]]

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100")
PAPER_RECALL = "Success"


def paper_recall_measure(k: int) -> str:
    """The ir_measures name of the paper's "R@k": ``"Success@k"``.

    RocketQAv2 (and ``msmarco_eval.py``'s recall@50 / recall@all, reported as R@50 / R@1000) define
    R@k as a hit rate: the share of queries with at least one relevant passage in the top k. That
    is ir_measures' ``Success@k``. ir_measures' own ``R@k`` is different: the share of a query's
    relevant documents found in the top k, averaged over queries.
    """
    if int(k) != k or k < 1:
        raise RqaError(f"recall cut-off must be a positive integer, got {k!r}")
    return f"{PAPER_RECALL}@{int(k)}"


def _parse_measure(name) -> list:
    """One measure name in ir_measures syntax ("RR@10") or trec_eval syntax ("ndcg_cut.10")."""
    if not isinstance(name, str):
        return [name]
    try:
        return [ir_measures.parse_measure(name)]
    except (NameError, ValueError, SyntaxError, TypeError) as ir_error:
        try:
            return list(ir_measures.parse_trec_measure(name))
        except (NameError, ValueError, SyntaxError, TypeError):
            reason = " ".join(str(ir_error).split())
            raise RqaError(
                f"unknown measure {name!r} ({reason}): use ir_measures names such as "
                "nDCG@10, RR@10, R@100, Success@50"
            ) from None


def _parse_measures(measures) -> list:
    """Measure names or objects -> distinct ir_measures measures, in the given order."""
    if isinstance(measures, str):
        measures = [measures]
    parsed = list(dict.fromkeys(m for name in measures for m in _parse_measure(name)))
    if not parsed:
        raise RqaError("no measure given: pass names such as ('nDCG@10', 'RR@10', 'R@100')")
    return parsed


def _judged_query_ids(qrels: Qrels) -> list[str]:
    """Query ids with at least one relevant (relevance > 0) document, sorted."""
    judged = sorted(qid for qid, docs in qrels.items() if any(rel > 0 for rel in docs.values()))
    if not judged:
        raise RqaError(
            "split has no qrels: no query has a relevant document; evaluate a split with "
            "relevance judgements (e.g. MS MARCO dev, not test)"
        )
    return judged


def _check_overlap(run: Run, judged: Sequence[str]) -> None:
    if not any(qid in run for qid in judged):
        raise RqaError("the run shares no query with the qrels: check the split")


def per_query(run: Run, qrels: Qrels, measures=DEFAULT_MEASURES, queries: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-query values: columns ``query_id``, ``measure``, ``value``.

    Every judged query appears once per measure (a query missing from the run has value 0.0), so
    two systems' frames align query by query for :func:`paired_test`. Rows are grouped by measure
    in the given order, then by query id. ``queries``: the query ids averaged over instead of those
    with a relevant document (answer mode: every question with an answer; one with no
    answer-bearing passage scores 0).
    """
    parsed = _parse_measures(measures)
    judged = _judged_query_ids(qrels) if queries is None else sorted(set(queries))
    if not judged:
        raise RqaError("no query to average over: the split has no judged or answered query")
    _check_overlap(run, judged)
    judged_qrels = {qid: dict(qrels[qid]) for qid in judged if qrels.get(qid)}
    judged_run = {qid: dict(run[qid]) for qid in judged if qid in run}
    values = {(str(m.measure), m.query_id): float(m.value)
              for m in ir_measures.iter_calc(parsed, judged_qrels, judged_run)}
    rows = [(qid, str(measure), values.get((str(measure), qid), 0.0))
            for measure in parsed for qid in judged]
    return pd.DataFrame(rows, columns=["query_id", "measure", "value"])


def evaluate_run(run: Run, qrels: Qrels, measures=DEFAULT_MEASURES,
                 queries: Iterable[str] | None = None) -> dict[str, float]:
    """Mean of each measure over the judged queries: {"nDCG@10": ..., "RR@10": ..., "R@100": ...}.

    Keys are the names as ir_measures writes them ("MRR@10" is ir_measures' "RR@10"). The
    denominator is the number of queries with a relevant document, as in ``msmarco_eval.py``:
    per-query values from ``ir_measures.iter_calc`` are filled with 0 for judged queries absent
    from the run, and queries judged only non-relevant (which ``ir_measures.calc_aggregate``
    would count) are left out. ``queries``: as :func:`per_query`.
    """
    frame = per_query(run, qrels, measures, queries)
    means = frame.groupby("measure", sort=False)["value"].mean()
    return {measure: float(value) for measure, value in means.items()}


def paired_test(a, b) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test of two systems' per-query values.

    ``a`` and ``b``: arrays of shape (n_queries,) in the same query order, or pandas Series
    indexed by query id (aligned by index). Returns mean_a, mean_b, diff (= mean_b - mean_a),
    p_ttest (``scipy.stats.ttest_rel``), p_wilcoxon (``scipy.stats.wilcoxon``, zero differences
    dropped) and n. When every difference is zero both p-values are 1.0.
    """
    values_a, values_b = _aligned_values(a, b)
    differences = values_b - values_a  # (n,)
    if np.all(differences == 0):
        p_ttest = p_wilcoxon = 1.0
    else:
        p_ttest = float(stats.ttest_rel(values_a, values_b).pvalue)
        p_wilcoxon = float(stats.wilcoxon(values_a, values_b).pvalue)
    return {
        "mean_a": float(values_a.mean()),
        "mean_b": float(values_b.mean()),
        "diff": float(differences.mean()),
        "p_ttest": p_ttest,
        "p_wilcoxon": p_wilcoxon,
        "n": int(len(values_a)),
    }


def _aligned_values(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two per-query value vectors of shape (n,), aligned by query id when both are Series."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if set(a.index) != set(b.index):
            raise RqaError(
                "the two per-query series cover different queries: compute both with per_query "
                "on the same qrels"
            )
        b = b.loc[a.index]
    values_a = np.asarray(a, dtype=float)
    values_b = np.asarray(b, dtype=float)
    if values_a.shape != values_b.shape or values_a.ndim != 1:
        raise RqaError(
            f"paired test needs two 1-d value vectors of equal length, got shapes "
            f"{values_a.shape} and {values_b.shape}"
        )
    if len(values_a) < 2:
        raise RqaError(f"paired test needs at least 2 queries, got {len(values_a)}")
    return values_a, values_b


class SimpleTokenizer:
    """DPR's ``SimpleTokenizer`` (dpr/utils/tokenizers.py): runs of letters, digits and marks, or
    any single other non-space, non-control character."""

    ALPHA_NUM = r"[\p{L}\p{N}\p{M}]+"
    NON_WS = r"[^\p{Z}\p{C}]"

    def __init__(self) -> None:
        self._regexp = regex.compile(
            "(%s)|(%s)" % (self.ALPHA_NUM, self.NON_WS),
            flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE,
        )

    def words(self, text: str, uncased: bool = True) -> list[str]:
        """Word tokens of ``text`` (lower-cased when ``uncased``, as DPR's ``Tokens.words``)."""
        tokens = [match.group() for match in self._regexp.finditer(text)]
        return [token.lower() for token in tokens] if uncased else tokens


_TOKENIZER = SimpleTokenizer()


def normalize(text: str) -> str:
    """Unicode NFD, as DPR's ``_normalize`` (accents become separate combining marks)."""
    return unicodedata.normalize("NFD", text)


def _contains(tokens: Sequence[str], answer_tokens: Sequence[str]) -> bool:
    width = len(answer_tokens)
    return any(list(tokens[i:i + width]) == list(answer_tokens)
               for i in range(len(tokens) - width + 1))


def has_answer(text: str, answers: Iterable[str]) -> bool:
    """DPR ``has_answer`` in 'string' mode (dpr/data/qa_validation.py).

    The NFD-normalised passage and each NFD-normalised answer are split into uncased word tokens;
    True when some answer's token sequence occurs contiguously in the passage's. An answer with no
    tokens (e.g. an empty string) is skipped, where DPR would count it as matching every passage.
    """
    passage_tokens = _TOKENIZER.words(normalize(text))
    for answer in answers:
        answer_tokens = _TOKENIZER.words(normalize(answer))
        if answer_tokens and _contains(passage_tokens, answer_tokens):
            return True
    return False


def _ranked_doc_ids(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by descending score; ties by descending doc id, as trec_eval (and ir_measures) do."""
    return sorted(scores, key=lambda doc_id: (scores[doc_id], doc_id), reverse=True)


def _first_answer_rank(scores: Mapping[str, float], answers: Sequence[str],
                       doc_text: Callable[[str], str], depth: int) -> int | None:
    """1-based rank of the first answer-containing passage within ``depth``, or None."""
    for rank, doc_id in enumerate(_ranked_doc_ids(scores)[:depth], start=1):
        if has_answer(doc_text(doc_id), answers):
            return rank
    return None


def answer_top_k_accuracy(run: Run, answers: Mapping[str, Sequence[str]],
                          doc_text: Callable[[str], str],
                          ks: Sequence[int] = (5, 20, 100)) -> dict[str, float]:
    """NQ top-k retrieval accuracy, the paper's NQ "R@k": {"Top@5": ..., "Top@20": ..., ...}.

    Share of the questions in ``answers`` (question id -> gold answer strings) with a passage in
    the top k of the run that contains an answer by :func:`has_answer`. ``doc_text(doc_id)`` gives
    the text matched against; DPR matches the passage text without its title. A question missing
    from the run counts as a miss.
    """
    if not answers:
        raise RqaError("split has no answers: pass the gold answers of the evaluated questions")
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise RqaError(f"cut-offs must be positive integers, got {tuple(ks)!r}")
    if not any(qid in run for qid in answers):
        raise RqaError("the run shares no question with the answers: check the split")
    depth = int(max(ks))
    first_ranks = [_first_answer_rank(run.get(qid, {}), list(answers[qid]), doc_text, depth)
                   for qid in answers]
    return {f"Top@{int(k)}": sum(r is not None and r <= k for r in first_ranks) / len(first_ranks)
            for k in ks}


# ---------------------------------------------------------------------------------------------
# Scoring a split: by its qrels, or by its answers
# ---------------------------------------------------------------------------------------------

RELEVANCE_MODES = ("auto", "qrels", "answers")
PassageTexts = Callable[[list[str]], list[str]]   # doc ids -> passage texts (no titles), same order


def answered_questions(answers: Mapping[str, Sequence[str]]) -> list[str]:
    """Question ids with at least one non-empty answer string, sorted."""
    return sorted(qid for qid, strings in answers.items() if any(str(a).strip() for a in strings))


def passage_texts(corpus) -> PassageTexts:
    """doc ids -> passage texts without titles (what DPR's has_answer reads) from a Corpus."""
    return lambda doc_ids: [doc.text for doc in corpus.get_many(doc_ids)]


def answer_qrels(run: Run, answers: Mapping[str, Sequence[str]], passage_texts: PassageTexts,
                 cache: dict | None = None) -> dict[str, dict[str, int]]:
    """Judgements from gold answers: every passage the run retrieved for a question is 1 if its
    text contains an answer (:func:`has_answer`, DPR 'string' mode), else 0.

    ``passage_texts(doc_ids)`` gives the passage texts; DPR matches the text without the title.
    Questions absent from the run get no judgements (they score 0 in :func:`per_query`).
    ``cache``: a dict of (question id, doc id) -> 0/1 kept between calls (runs that share passages).
    """
    cache = {} if cache is None else cache
    qrels: dict[str, dict[str, int]] = {}
    for qid in answered_questions(answers):
        doc_ids = list(run.get(qid, {}))
        unseen = [d for d in doc_ids if (qid, d) not in cache]
        if unseen:
            for doc, text in zip(unseen, passage_texts(unseen)):
                cache[(qid, doc)] = int(has_answer(text, answers[qid]))
        if doc_ids:
            qrels[qid] = {doc: cache[(qid, doc)] for doc in doc_ids}
    return qrels


def relevance_mode(split, relevance: str = "auto") -> str:
    """"answers" or "qrels" for a split: auto = answers when the split has them (NQ), else qrels."""
    if relevance not in RELEVANCE_MODES:
        raise RqaError(f"relevance {relevance!r}; choose one of: {', '.join(RELEVANCE_MODES)}")
    has_answers = bool(getattr(split, "answers", None))
    if relevance == "answers" and not has_answers:
        raise RqaError(f"split {getattr(split, 'dataset_id', '')!r} has no answers; use evaluate.relevance=qrels")
    if relevance == "auto":
        return "answers" if has_answers else "qrels"
    return relevance


def judgements(run: Run, split, passage_texts: PassageTexts | None = None, relevance: str = "auto",
               cache: dict | None = None) -> tuple[Qrels, list[str] | None]:
    """(qrels, queries) to score ``run`` on ``split`` with :func:`evaluate_run` / :func:`per_query`.

    qrels mode: the split's qrels and None (average over the judged queries). answers mode:
    :func:`answer_qrels` of this run and every answered question of the split.
    """
    if relevance_mode(split, relevance) == "qrels":
        return split.qrels, None
    if passage_texts is None:
        raise RqaError(f"split {getattr(split, 'dataset_id', '')!r} is scored by its answers: pass the passage "
                       "texts (the corpus), or set evaluate.relevance=qrels")
    questions = [q for q in answered_questions(split.answers) if q in split.queries]
    return answer_qrels(run, {q: split.answers[q] for q in questions}, passage_texts, cache), questions


def evaluate_split(run: Run, split, measures=DEFAULT_MEASURES, passage_texts: PassageTexts | None = None,
                   relevance: str = "auto", cache: dict | None = None) -> dict[str, float]:
    """:func:`evaluate_run` by the split's qrels, or by its answers (see :func:`judgements`)."""
    qrels, queries = judgements(run, split, passage_texts, relevance, cache)
    return evaluate_run(run, qrels, measures, queries)


def per_query_split(run: Run, split, measures=DEFAULT_MEASURES, passage_texts: PassageTexts | None = None,
                    relevance: str = "auto", cache: dict | None = None) -> pd.DataFrame:
    """:func:`per_query` by the split's qrels, or by its answers (see :func:`judgements`)."""
    qrels, queries = judgements(run, split, passage_texts, relevance, cache)
    return per_query(run, qrels, measures, queries)

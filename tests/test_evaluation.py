"""Metrics against hand-computed values and ir_measures; DPR answer matching on small passages."""

import math

import ir_measures
import numpy as np
import pandas as pd
import pytest

from rqakit.data.collection import Split
from rqakit.errors import RqaError
from rqakit.evaluation import (
    DEFAULT_MEASURES,
    PAPER_RECALL,
    SimpleTokenizer,
    answer_qrels,
    answer_top_k_accuracy,
    evaluate_run,
    evaluate_split,
    has_answer,
    paired_test,
    paper_recall_measure,
    per_query,
    per_query_split,
)

# q1: one relevant doc (d1). q2, q3: two relevant docs each. q4: judged, absent from the run.
# q5: judged non-relevant only, so it is not part of the averaged query set.
QRELS_TREC = """
q1 0 d1 1
q1 0 d2 0
q2 0 d3 1
q2 0 d4 1
q3 0 d5 1
q3 0 d6 1
q4 0 d7 1
q5 0 d8 0
"""

# q1: d1 at rank 3.  q2: d3 at rank 1, d4 at rank 3.  q3: d5 at rank 1, d6 not retrieved.
# q6 is not in the qrels and must be ignored.
RUN_TREC = """
q1 Q0 d9 1 3.0 bm25
q1 Q0 d2 2 2.0 bm25
q1 Q0 d1 3 1.0 bm25
q2 Q0 d3 1 3.0 bm25
q2 Q0 d5 2 2.0 bm25
q2 Q0 d4 3 1.0 bm25
q3 Q0 d5 1 2.0 bm25
q3 Q0 d0 2 1.0 bm25
q6 Q0 d1 1 9.0 bm25
"""


def as_qrels(text):
    qrels = {}
    for qrel in ir_measures.read_trec_qrels(text):
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = qrel.relevance
    return qrels


def as_run(text):
    run = {}
    for scored in ir_measures.read_trec_run(text):
        run.setdefault(scored.query_id, {})[scored.doc_id] = scored.score
    return run


QRELS = as_qrels(QRELS_TREC)
RUN = as_run(RUN_TREC)

# Hand values per judged query (q4 missing from the run -> 0 for every measure):
#   RR@10:   q1 = 1/3, q2 = 1, q3 = 1
#   nDCG@10: q1 = (1/log2(4)) / 1 = 0.5
#            q2 = (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309298 = 0.9197208
#            q3 = 1 / (1 + 1/log2(3)) = 0.6131472
#   R@100 (share of relevant docs retrieved): q1 = 1, q2 = 1, q3 = 1/2
#   Success@100 (at least one relevant in the top 100): q1 = q2 = q3 = 1
NDCG_Q2 = 1.5 / (1 + 1 / math.log2(3))
NDCG_Q3 = 1 / (1 + 1 / math.log2(3))


def test_rr_is_reciprocal_rank_of_first_relevant_doc():
    values = per_query(RUN, QRELS, ["RR@10"]).set_index("query_id")["value"]
    assert values["q1"] == pytest.approx(1 / 3)
    assert values["q2"] == pytest.approx(1.0)


def test_ndcg_two_relevant_docs_by_hand():
    values = per_query(RUN, QRELS, ["nDCG@10"]).set_index("query_id")["value"]
    assert values["q1"] == pytest.approx(0.5)
    assert values["q2"] == pytest.approx(NDCG_Q2)  # 0.9197
    assert values["q3"] == pytest.approx(NDCG_Q3)  # 0.6131


def test_mean_is_over_judged_queries_with_missing_query_as_zero():
    # Denominator 4 (q1..q4); q5 has no relevant doc, q6 is not judged.
    metrics = evaluate_run(RUN, QRELS)
    assert set(metrics) == set(DEFAULT_MEASURES)
    assert metrics["RR@10"] == pytest.approx((1 / 3 + 1 + 1 + 0) / 4)  # 7/12
    assert metrics["nDCG@10"] == pytest.approx((0.5 + NDCG_Q2 + NDCG_Q3 + 0) / 4)
    assert metrics["R@100"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)  # 0.625


def test_judged_query_missing_from_run_lowers_the_mean():
    run_with_q4 = {**RUN, "q4": {"d7": 1.0}}  # q4 now RR = 1
    with_q4 = evaluate_run(run_with_q4, QRELS, ["RR@10"])["RR@10"]
    without_q4 = evaluate_run(RUN, QRELS, ["RR@10"])["RR@10"]
    assert with_q4 == pytest.approx((1 / 3 + 1 + 1 + 1) / 4)
    assert without_q4 == pytest.approx(with_q4 - 1 / 4)


def test_queries_without_relevant_docs_are_not_averaged():
    # q5 has only a non-relevant judgement: msmarco_eval.py never sees it, so neither do we
    # (ir_measures.calc_aggregate would count it as a fifth query scoring 0).
    without_q5 = {qid: docs for qid, docs in QRELS.items() if qid != "q5"}
    assert evaluate_run(RUN, QRELS) == pytest.approx(evaluate_run(RUN, without_q5))
    assert "q5" not in set(per_query(RUN, QRELS, ["RR@10"]).query_id)


def test_matches_ir_measures_when_run_covers_every_judged_query():
    qrels = {qid: QRELS[qid] for qid in ("q1", "q2", "q3")}
    measures = ["nDCG@10", "RR@10", "R@100", "Success@2", "P@3", "AP"]
    ours = evaluate_run(RUN, qrels, measures)
    reference = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(name) for name in measures], qrels, RUN)
    assert ours == pytest.approx({str(m): v for m, v in reference.items()})


def test_recall_differs_from_paper_hit_rate():
    # q3: 2 relevant, 1 retrieved -> ir_measures R@100 = 0.5, the paper's R@100 (Success) = 1.
    qrels = {"q3": QRELS["q3"]}
    metrics = evaluate_run(RUN, qrels, ["R@100", paper_recall_measure(100)])
    assert metrics == pytest.approx({"R@100": 0.5, "Success@100": 1.0})


def test_paper_recall_measure_names_success():
    assert PAPER_RECALL == "Success"
    assert paper_recall_measure(50) == "Success@50"
    assert "Success@k" in paper_recall_measure.__doc__
    with pytest.raises(RqaError):
        paper_recall_measure(0)


def test_measure_aliases_are_keyed_as_ir_measures_writes_them():
    # MRR@10 is ir_measures' RR@10; trec_eval's recip_rank is RR (no cut-off).
    metrics = evaluate_run(RUN, QRELS, ["MRR@10", "recip_rank"])
    assert set(metrics) == {"RR@10", "RR"}
    assert metrics["RR@10"] == pytest.approx(7 / 12)


def test_per_query_frame_has_every_judged_query():
    frame = per_query(RUN, QRELS, ["RR@10", "R@100"])
    assert list(frame.columns) == ["query_id", "measure", "value"]
    assert len(frame) == 8  # 4 judged queries x 2 measures; q5 and q6 absent
    rr = frame[frame.measure == "RR@10"].set_index("query_id")["value"]
    assert rr.to_dict() == pytest.approx({"q1": 1 / 3, "q2": 1.0, "q3": 1.0, "q4": 0.0})
    recall = frame[frame.measure == "R@100"].set_index("query_id")["value"]
    assert recall.to_dict() == pytest.approx({"q1": 1.0, "q2": 1.0, "q3": 0.5, "q4": 0.0})


def test_run_without_judged_query_raises():
    with pytest.raises(RqaError, match="the run shares no query with the qrels: check the split"):
        evaluate_run({"q6": {"d1": 1.0}}, QRELS)


def test_empty_qrels_raise():
    with pytest.raises(RqaError, match="^split has no qrels: "):
        evaluate_run(RUN, {})
    with pytest.raises(RqaError, match="^split has no qrels: "):
        evaluate_run(RUN, {"q5": {"d8": 0}})


def test_unknown_measure_raises_one_line_naming_it():
    with pytest.raises(RqaError, match="Foo@10") as error:
        evaluate_run(RUN, QRELS, ["nDCG@10", "Foo@10"])
    assert "\n" not in str(error.value)
    with pytest.raises(RqaError, match="nDCG@x"):
        evaluate_run(RUN, QRELS, ["nDCG@x"])


def test_paired_test_identical_systems():
    values = np.array([0.2, 0.5, 1.0, 0.0, 0.3])
    result = paired_test(values, values.copy())
    assert result == {"mean_a": pytest.approx(0.4), "mean_b": pytest.approx(0.4), "diff": 0.0,
                      "p_ttest": 1.0, "p_wilcoxon": 1.0, "n": 5}


def test_paired_test_clear_shift():
    a = np.linspace(0.1, 0.4, 12)
    b = a + 0.3 + np.linspace(0.0, 0.05, 12)  # every query improves
    result = paired_test(a, b)
    assert result["n"] == 12
    assert result["diff"] == pytest.approx(0.325)
    assert result["p_ttest"] < 1e-6
    # Exact two-sided signed-rank p with all 12 differences positive: 2 / 2**12.
    assert result["p_wilcoxon"] == pytest.approx(2 / 2**12)


def test_paired_test_aligns_series_by_query():
    a = pd.Series({"q1": 0.1, "q2": 0.2, "q3": 0.9})
    b = pd.Series({"q3": 0.8, "q1": 0.4, "q2": 0.6})  # same queries, other order
    result = paired_test(a, b)
    assert result["diff"] == pytest.approx(((0.4 - 0.1) + (0.6 - 0.2) + (0.8 - 0.9)) / 3)
    expected = paired_test(a.to_numpy(), np.array([0.4, 0.6, 0.8]))
    assert result == pytest.approx(expected)
    with pytest.raises(RqaError):
        paired_test(a, pd.Series({"q1": 0.1, "q2": 0.2, "q4": 0.3}))
    with pytest.raises(RqaError):
        paired_test(np.zeros(3), np.zeros(4))


def test_paired_test_on_per_query_frames():
    better = {**RUN, "q4": {"d7": 1.0}}
    frame_a = per_query(RUN, QRELS, ["RR@10"]).set_index("query_id")["value"]
    frame_b = per_query(better, QRELS, ["RR@10"]).set_index("query_id")["value"]
    result = paired_test(frame_a, frame_b)
    assert result["n"] == 4
    assert result["diff"] == pytest.approx(0.25)  # only q4 changes, 0 -> 1


def test_tokenizer_splits_words_and_punctuation():
    assert SimpleTokenizer().words("Hello, World! U.S.") == ["hello", ",", "world", "!",
                                                             "u", ".", "s", "."]


def test_has_answer_matches_whole_tokens():
    passage = "The Eiffel Tower is in Paris."
    assert has_answer(passage, ["paris"])
    assert not has_answer(passage, ["par"])  # not a whole token
    assert has_answer(passage, ["London", "PARIS"])  # any answer, uncased


def test_has_answer_multi_token_answers_must_be_contiguous():
    passage = "The Eiffel Tower is in Paris."
    assert has_answer(passage, ["eiffel tower"])
    assert not has_answer(passage, ["tower eiffel"])
    assert not has_answer(passage, ["tower in paris"])  # "is" sits between
    assert has_answer("It was made in the U.S. in 1990.", ["U.S."])


def test_has_answer_unicode_accents_after_nfd():
    composed = "Pel\u00e9"  # é as one code point
    decomposed = "Pele\u0301"  # e + combining acute accent
    assert has_answer(f"{composed} scored 1,279 goals.", [decomposed])
    assert has_answer(f"{decomposed} scored 1,279 goals.", [composed])
    # The combining mark stays inside the token (\p{M}), so the accent is not stripped.
    assert not has_answer(f"{composed} scored 1,279 goals.", ["pele"])


def test_has_answer_skips_empty_answers():
    assert not has_answer("The Eiffel Tower is in Paris.", ["", "  "])


PASSAGES = {
    "p1": "Paris is the capital of France.",
    "p2": "Berlin is in Germany.",
    "p3": "The Thames flows through London.",
    "p4": "Rome is an old city.",
}
ANSWERS = {"qa": ["Paris"], "qb": ["London"], "qc": ["Madrid"]}
# qa: answer at rank 1.  qb: p4 and p3 tie at 0.7; trec_eval breaks ties by descending doc id, so
# p4 is rank 2 and p3 (the answer) rank 3.  qc: missing from the run -> a miss.  qz: no answers.
ANSWER_RUN = {
    "qa": {"p1": 0.9, "p2": 0.5},
    "qb": {"p2": 0.9, "p3": 0.7, "p4": 0.7},
    "qz": {"p1": 1.0},
}


def test_answer_top_k_accuracy_by_hand():
    accuracy = answer_top_k_accuracy(ANSWER_RUN, ANSWERS, PASSAGES.__getitem__, ks=(1, 2, 3))
    assert accuracy == pytest.approx({"Top@1": 1 / 3, "Top@2": 1 / 3, "Top@3": 2 / 3})


def test_answer_top_k_accuracy_agrees_with_success_on_answer_qrels():
    answer_qrels = {qid: {doc: int(has_answer(text, answers)) for doc, text in PASSAGES.items()}
                    for qid, answers in ANSWERS.items()}
    answer_qrels["qc"]["p0"] = 1  # a relevant passage absent from the collection keeps qc judged
    success = evaluate_run(ANSWER_RUN, answer_qrels, [paper_recall_measure(k) for k in (1, 2, 3)])
    accuracy = answer_top_k_accuracy(ANSWER_RUN, ANSWERS, PASSAGES.__getitem__, ks=(1, 2, 3))
    assert list(accuracy.values()) == pytest.approx(list(success.values()))


def test_answer_top_k_accuracy_errors():
    with pytest.raises(RqaError, match="shares no question"):
        answer_top_k_accuracy({"qz": {"p1": 1.0}}, ANSWERS, PASSAGES.__getitem__)
    with pytest.raises(RqaError):
        answer_top_k_accuracy(ANSWER_RUN, {}, PASSAGES.__getitem__)
    with pytest.raises(RqaError):
        answer_top_k_accuracy(ANSWER_RUN, ANSWERS, PASSAGES.__getitem__, ks=(0,))


# --- scoring a split by its answers (NQ) -------------------------------------------------------

def texts_of(doc_ids):
    return [PASSAGES[d] for d in doc_ids]


QA_RUN = {"qa": {"p1": 0.9, "p2": 0.5}, "qb": {"p2": 0.9, "p4": 0.8, "p3": 0.7}, "qz": {"p1": 1.0}}  # no ties
QA_SPLIT = Split("synthetic/qa", {"qa": "capital of france", "qb": "river of london", "qc": "capital of spain"},
                 qrels={"qa": {"p2": 1}}, answers=ANSWERS)


def test_answer_qrels_judge_every_retrieved_passage_by_has_answer():
    qrels = answer_qrels(ANSWER_RUN, ANSWERS, texts_of)
    assert qrels == {"qa": {"p1": 1, "p2": 0}, "qb": {"p2": 0, "p3": 1, "p4": 0}}  # qc: not retrieved, qz: no answers


def test_a_split_with_answers_is_scored_by_them_over_every_answered_question():
    # qa: answer at rank 1; qb: answer at rank 3; qc: missing from the run -> 0; qz: no answers.
    by_answers = evaluate_split(QA_RUN, QA_SPLIT, ["Success@1", "Success@3", "RR@10"], texts_of)
    assert by_answers == pytest.approx({"Success@1": 1 / 3, "Success@3": 2 / 3, "RR@10": (1 + 1 / 3) / 3})
    accuracy = answer_top_k_accuracy(QA_RUN, ANSWERS, PASSAGES.__getitem__, ks=(1, 3))
    assert [by_answers["Success@1"], by_answers["Success@3"]] == pytest.approx(list(accuracy.values()))
    # The qrels (p2 for qa only) give another answer: that is what the stages used to report on NQ.
    by_qrels = evaluate_split(QA_RUN, QA_SPLIT, ["Success@1", "RR@10"], texts_of, relevance="qrels")
    assert by_qrels == pytest.approx({"Success@1": 0.0, "RR@10": 0.5})
    frame = per_query_split(QA_RUN, QA_SPLIT, ["RR@10"], texts_of)
    assert dict(zip(frame.query_id, frame.value)) == pytest.approx({"qa": 1.0, "qb": 1 / 3, "qc": 0.0})


def test_answer_scoring_fetches_each_passage_once_with_a_shared_cache():
    fetched, cache = [], {}

    def counting(doc_ids):
        fetched.extend(doc_ids)
        return texts_of(doc_ids)

    for _ in range(2):
        evaluate_split(ANSWER_RUN, QA_SPLIT, ["RR@10"], counting, cache=cache)
    assert sorted(fetched) == ["p1", "p2", "p2", "p3", "p4"]  # (qa, p2) and (qb, p2) are two pairs


def test_answer_scoring_errors_say_what_to_do():
    with pytest.raises(RqaError, match="pass the passage texts"):
        evaluate_split(ANSWER_RUN, QA_SPLIT, ["RR@10"])
    no_answers = Split("synthetic/plain", {"qa": "q"}, {"qa": {"p1": 1}})
    with pytest.raises(RqaError, match="has no answers; use evaluate.relevance=qrels"):
        evaluate_split(ANSWER_RUN, no_answers, ["RR@10"], texts_of, relevance="answers")
    assert evaluate_split(ANSWER_RUN, no_answers, ["RR@10"]) == {"RR@10": 1.0}  # auto: qrels, no texts needed

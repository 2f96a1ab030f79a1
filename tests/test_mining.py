"""Hybrid data augmentation rules (RocketQAv2 §4.3, RocketQA v1 thresholds) on hand-set cases."""

import math

import numpy as np
import pytest

from rqakit.data.collection import Split
from rqakit.errors import RqaError
from rqakit.mining import (
    Calibrator,
    DenoiseRule,
    answer_bearing,
    build_lists,
    calibration_settings,
    denoising_quality,
    labelled_pairs,
    read_lists,
    training_lists,
    write_lists,
)

SIGMOID = Calibrator("sigmoid")


def _logit(prob):
    return math.log(prob / (1.0 - prob))


# One query "q1", labelled positive "p" at retrieval rank 2 of 11; the CE scored the first 8.
CANDIDATES = ["d1", "p", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10"]
PROBS = {"d1": 0.95, "p": 0.97, "d2": 0.05, "d3": 0.5, "d4": 0.02, "d5": 0.93, "d6": 0.01, "d7": 0.08}
SCORE_DEPTH = 8
# d1: highest unlabelled prob > 0.9 -> pseudo-positive; d5 (0.93, not chosen) and d3 (0.5) are
# dropped as likely false negatives; d2, d4, d6, d7 (< 0.1) are the denoised negatives.
DENOISED_NEGATIVES = {"d2", "d4", "d6", "d7"}
BEYOND_WINDOW = {"d8", "d9", "d10"}


def _split(qrels, queries=None):
    queries = queries or {q: f"text of {q}" for q in qrels}
    return Split(dataset_id="toy/train", queries=queries, qrels=qrels, name="train")


def _hand_case():
    split = _split({"q1": {"p": 1}})
    candidates = {"q1": CANDIDATES}
    ce_scores = {"q1": {d: _logit(prob) for d, prob in PROBS.items()}}
    return split, candidates, ce_scores


def _build(split, candidates, ce_scores, **kwargs):
    """build_lists with the case's settings; the denoising ones (DenoiseRule's fields) go into its rule."""
    rule = {"score_depth": SCORE_DEPTH, **{k: kwargs.pop(k) for k in list(kwargs) if k in DenoiseRule.__dataclass_fields__}}
    settings = dict(list_size=4, calibrator=SIGMOID, seed=0, rule=DenoiseRule(**rule))
    settings.update(kwargs)
    return build_lists(split, candidates, ce_scores, **settings)


def _row(lists, qid, kind):
    rows = lists[(lists.query_id == qid) & (lists.kind == kind)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_denoised_list_keeps_low_prob_negatives_and_takes_the_most_confident_pseudo_positive():
    lists, summary = _build(*_hand_case())
    denoised = _row(lists, "q1", "denoised")
    assert denoised.doc_ids[0] == "d1"
    assert denoised.positive_source == "pseudo"
    assert set(denoised.doc_ids[1:]) <= DENOISED_NEGATIVES
    assert len(denoised.doc_ids) == 4 and len(set(denoised.doc_ids)) == 4
    assert denoised.labels == [1, 0, 0, 0]
    assert not denoised.fallback
    assert summary["pseudo"] == {"q1": ["d1"]}
    assert summary["dropped"] == {"q1": ["d3", "d5"]}
    assert summary["dropped_as_false_negative"] == 2
    assert summary["pseudo_positives"] == 1
    np.testing.assert_allclose(denoised.ce_scores, [_logit(PROBS[d]) for d in denoised.doc_ids])


def test_undenoised_list_is_the_ground_truth_positive_and_random_retrieved_negatives():
    lists, summary = _build(*_hand_case())
    undenoised = _row(lists, "q1", "undenoised")
    assert undenoised.doc_ids[0] == "p" and undenoised.positive_source == "qrels"
    assert set(undenoised.doc_ids[1:]) <= set(CANDIDATES) - {"p"}
    assert len(set(undenoised.doc_ids)) == 4 and undenoised.labels == [1, 0, 0, 0]
    assert summary["lists"] == {"undenoised": 1, "denoised": 1}
    assert summary["queries_used"] == 1
    assert list(lists.kind) == ["undenoised", "denoised"]


def test_without_pseudo_positives_the_denoised_list_uses_the_ground_truth_positive_and_drops_all_confident():
    lists, summary = _build(*_hand_case(), max_pseudo_positives=0)
    denoised = _row(lists, "q1", "denoised")
    assert denoised.doc_ids[0] == "p" and denoised.positive_source == "qrels"
    assert set(denoised.doc_ids[1:]) <= DENOISED_NEGATIVES
    assert summary["dropped"] == {"q1": ["d1", "d3", "d5"]}
    assert summary["pseudo_positives"] == 0


def test_labelled_candidate_above_pos_threshold_is_never_a_pseudo_positive():
    split, candidates, ce_scores = _hand_case()
    ce_scores["q1"]["d1"] = _logit(0.5)  # now only d5 (0.93) is a confident unlabelled candidate
    lists, summary = _build(split, candidates, ce_scores)
    assert _row(lists, "q1", "denoised").doc_ids[0] == "d5"
    assert summary["dropped"] == {"q1": ["d1", "d3"]}


def test_ground_truth_positive_is_the_highest_grade_then_the_smallest_id():
    split = _split({"q1": {"pC": 2, "pA": 1, "pB": 2}})
    candidates = {"q1": [f"n{i}" for i in range(6)]}
    lists, _ = _build(split, candidates, {"q1": {d: -5.0 for d in candidates["q1"]}}, score_depth=6)
    assert _row(lists, "q1", "undenoised").doc_ids[0] == "pB"
    assert _row(lists, "q1", "denoised").doc_ids[0] == "pB"


def test_labelled_positives_are_never_negatives_in_either_kind():
    rng = np.random.default_rng(3)
    qrels, candidates, ce_scores = {}, {}, {}
    for q in range(20):
        qid = f"q{q}"
        docs = [f"{qid}-d{i}" for i in range(30)]
        labelled = list(rng.choice(docs, size=3, replace=False))
        qrels[qid] = {d: int(g) for d, g in zip(labelled, (1, 1, 2))}
        candidates[qid] = docs
        ce_scores[qid] = {d: float(rng.normal(0, 3)) for d in docs[:20]}
    lists, _ = build_lists(_split(qrels), candidates, ce_scores, list_size=8, calibrator=SIGMOID,
                           rule=DenoiseRule(score_depth=20), seed=5)
    assert len(lists) == 40
    for row in lists.itertuples():
        assert not set(row.doc_ids[1:]) & set(qrels[row.query_id])
        assert len(row.doc_ids) == 8 and len(set(row.doc_ids)) == 8


def _many_queries():
    qrels = {f"q{i}": {f"q{i}-pos": 1} for i in range(6)}
    candidates = {q: [f"{q}-d{i}" for i in range(40)] for q in qrels}
    ce_scores = {q: {d: -4.0 for d in docs[:20]} for q, docs in candidates.items()}
    return _split(qrels), candidates, ce_scores


def test_sampling_is_deterministic_by_seed_and_independent_of_other_queries():
    split, candidates, ce_scores = _many_queries()
    first, _ = _build(split, candidates, ce_scores, score_depth=20, seed=7)
    again, _ = _build(split, candidates, ce_scores, score_depth=20, seed=7)
    other, _ = _build(split, candidates, ce_scores, score_depth=20, seed=8)
    assert first.doc_ids.tolist() == again.doc_ids.tolist()
    assert first.doc_ids.tolist() != other.doc_ids.tolist()
    alone, _ = _build(split.subset(["q3"]), {"q3": candidates["q3"]}, ce_scores, score_depth=20, seed=7)
    assert alone.doc_ids.tolist() == first[first.query_id == "q3"].doc_ids.tolist()


def test_fallback_fills_from_beyond_the_scored_window_and_is_counted():
    lists, summary = _build(*_hand_case(), list_size=6)  # 5 negatives needed, 4 pass the threshold
    denoised = _row(lists, "q1", "denoised")
    assert denoised.fallback
    negatives = denoised.doc_ids[1:]
    assert set(negatives[:4]) == DENOISED_NEGATIVES
    assert negatives[4] in BEYOND_WINDOW
    assert math.isnan(denoised.ce_scores[5])
    assert summary["fallback_lists"] == 1
    assert not _row(lists, "q1", "undenoised").fallback


def test_too_few_negatives_even_with_fallback_raises():
    with pytest.raises(RqaError, match=r"1 queries .* fewer than 8 denoised negatives.*retrieve_depth"):
        _build(*_hand_case(), list_size=9)  # 4 denoised + 3 beyond the window < 8


def test_list_size_larger_than_usable_candidates_names_the_count():
    split, candidates, ce_scores = _hand_case()
    split = _split({"q1": {"p": 1}, "q2": {"e1": 1}, "q3": {"f1": 1}})
    candidates = {**candidates, "q2": ["e1", "e2", "e3"], "q3": ["f2", "f3", "f4"]}
    ce_scores = {**ce_scores, "q2": {"e1": 1.0, "e2": -3.0, "e3": -3.0}, "q3": {d: -3.0 for d in candidates["q3"]}}
    message = r"list size m=4 needs 3 negatives but 1 queries have fewer than 3 usable candidates"
    with pytest.raises(RqaError, match=message + r".*augment\.retrieve_depth"):
        _build(split, candidates, ce_scores)


def test_query_without_positive_is_skipped_and_counted():
    split, candidates, ce_scores = _hand_case()
    split = _split({"q1": {"p": 1}, "q0": {"z": 0}, "q9": {}})
    candidates = {**candidates, "q0": CANDIDATES, "q9": CANDIDATES}
    lists, summary = _build(split, candidates, {**ce_scores, "q0": ce_scores["q1"], "q9": ce_scores["q1"]})
    assert set(lists.query_id) == {"q1"}
    assert summary["queries_without_positive"] == 2
    assert summary["queries_used"] == 1


@pytest.mark.parametrize("neg, pos", [(-0.1, 0.9), (0.1, 1.5), (0.9, 0.1), (0.5, 0.5)])
def test_thresholds_out_of_range_or_out_of_order_raise(neg, pos):
    with pytest.raises(RqaError, match="threshold"):
        _build(*_hand_case(), neg_threshold=neg, pos_threshold=pos)


def test_missing_ce_scores_in_the_window_raise():
    split, candidates, ce_scores = _hand_case()
    del ce_scores["q1"]["d4"]
    with pytest.raises(RqaError, match="1 queries .* lack CE scores"):
        _build(split, candidates, ce_scores)


def test_platt_recovers_a_known_logistic_model_and_is_monotone():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, size=20000)
    labels = (rng.random(20000) < 1.0 / (1.0 + np.exp(-(1.7 * logits - 0.8)))).astype(int)
    calibrator = Calibrator("platt").fit(logits, labels)
    assert calibrator.a == pytest.approx(1.7, abs=0.1)
    assert calibrator.b == pytest.approx(-0.8, abs=0.1)
    grid = np.linspace(-6, 6, 50)
    assert np.all(np.diff(calibrator(grid)) > 0)
    restored = Calibrator.from_dict(calibrator.to_dict())
    np.testing.assert_allclose(restored(grid), calibrator(grid))


def test_platt_makes_shifted_listwise_logits_usable_by_the_fixed_thresholds():
    rng = np.random.default_rng(1)
    raw = rng.normal(0.0, 2.0, size=5000)
    labels = (rng.random(5000) < 1.0 / (1.0 + np.exp(-raw))).astype(int)
    shifted = Calibrator("platt").fit(raw + 12.0, labels)  # listwise logits: any common shift
    np.testing.assert_allclose(shifted(np.array([12.0 - 3, 12.0, 12.0 + 3])),
                               1.0 / (1.0 + np.exp(-np.array([-3.0, 0.0, 3.0]))), atol=0.03)


def test_calibrator_errors():
    with pytest.raises(RqaError, match="not fitted"):
        Calibrator("platt")(np.zeros(3))
    with pytest.raises(RqaError, match="both"):
        Calibrator("platt").fit([1.0, 2.0], [1, 1])
    with pytest.raises(RqaError, match="a = .* <= 0"):
        Calibrator("platt").fit(np.linspace(-3, 3, 200), (np.linspace(-3, 3, 200) < 0).astype(int))
    with pytest.raises(RqaError, match="no probabilities"):
        Calibrator("rank")(np.zeros(2))
    with pytest.raises(RqaError, match="unknown calibration"):
        Calibrator("isotonic")
    np.testing.assert_allclose(Calibrator("sigmoid")(np.array([0.0, _logit(0.9)])), [0.5, 0.9])


def test_labelled_pairs_label_qrels_hits_and_skip_queries_without_positives():
    split = _split({"q1": {"p": 1, "g0": 0}, "q2": {}})
    logits, labels = labelled_pairs(split, {"q1": {"p": 2.0, "g0": -1.0, "x": 0.5}, "q2": {"y": 1.0}})
    assert sorted(zip(logits.tolist(), labels.tolist())) == [(-1.0, 0), (0.5, 0), (2.0, 1)]


# Rank rule, keep_from = 3. CE logits over the scored window (8):
#   d1 5.0 (rank 0), p 4.0 (1), d2 3.0 (2), d6 2.5 (3), d3 -1 (4), d4 -2 (5), d5 -3 (6), d7 -4 (7).
RANK_LOGITS = {"d1": 5.0, "p": 4.0, "d2": 3.0, "d3": -1.0, "d4": -2.0, "d5": -3.0, "d6": 2.5, "d7": -4.0}


def _rank_case(logits=RANK_LOGITS):
    return _split({"q1": {"p": 1}}), {"q1": CANDIDATES}, {"q1": dict(logits)}


def test_rank_rule_hand_case():
    lists, summary = _build(*_rank_case(), calibrator=Calibrator("rank"), rank_keep_from=3)
    denoised = _row(lists, "q1", "denoised")
    assert denoised.doc_ids[0] == "d1" and denoised.positive_source == "pseudo"
    assert set(denoised.doc_ids[1:]) <= {"d6", "d3", "d4", "d5", "d7"}
    assert summary["dropped"] == {"q1": ["d2"]}


def test_rank_rule_no_pseudo_when_top1_is_labelled_or_the_positive_was_not_scored():
    logits = {**RANK_LOGITS, "p": 6.0}
    lists, summary = _build(*_rank_case(logits), calibrator=Calibrator("rank"), rank_keep_from=3)
    assert _row(lists, "q1", "denoised").doc_ids[0] == "p"
    assert summary["dropped"] == {"q1": ["d1", "d2"]}

    split = _split({"q1": {"d10": 1}})  # the labelled positive sits beyond the scored window
    lists, summary = _build(split, {"q1": CANDIDATES}, {"q1": RANK_LOGITS}, calibrator=Calibrator("rank"),
                            rank_keep_from=3)
    assert _row(lists, "q1", "denoised").doc_ids[0] == "d10"
    assert summary["pseudo"] == {"q1": []}
    assert summary["dropped"] == {"q1": ["d1", "p", "d2"]}


def test_denoising_quality_hand_case():
    dropped = {"q1": ["a", "b", "c"], "q2": []}
    pseudo = {"q1": ["x"], "q2": []}
    unlabeled = {"q1": {"a", "b", "x", "y", "outside"}, "q2": set()}
    window = {"q1": ["a", "b", "c", "x", "y", "n1"], "q2": ["m1"]}
    quality = denoising_quality(dropped, pseudo, unlabeled, window)
    assert quality["unlabeled_positives_in_window"] == 4
    assert quality["dropped"] == {"flagged": 3, "true": 2, "precision": pytest.approx(2 / 3), "recall": 0.5}
    assert quality["pseudo"] == {"flagged": 1, "true": 1, "precision": 1.0, "recall": 0.25}
    assert quality["kept_out"]["precision"] == pytest.approx(3 / 4)
    assert quality["kept_out"]["recall"] == pytest.approx(3 / 4)
    empty = denoising_quality({"q2": []}, {"q2": []}, unlabeled, {"q2": ["m1"]})
    assert math.isnan(empty["dropped"]["precision"]) and math.isnan(empty["dropped"]["recall"])


def test_training_lists_union_undenoised_only_and_truncation(tmp_path):
    split, candidates, ce_scores = _many_queries()
    lists, _ = _build(split, candidates, ce_scores, list_size=6, score_depth=20)
    lists.loc[1, "ce_scores"] = [lists.ce_scores[1][0], math.nan, *lists.ce_scores[1][2:]]   # an unscored fallback
    path = write_lists(lists, tmp_path / "lists.parquet")
    both = training_lists(path)
    assert len(both) == 12 and both.doc_index.shape == (12, 6) and both.doc_index.dtype == np.int32
    for i, row in enumerate(lists.itertuples()):   # file order, every id and logit as written
        assert both.query_ids[i] == row.query_id and both.docs(i) == row.doc_ids
        np.testing.assert_array_equal(both.ce_scores[i], row.ce_scores)
    assert math.isnan(both.ce_scores[1, 1])
    assert len(set(both.doc_ids)) == len(both.doc_ids)   # each passage id once
    undenoised = training_lists(path, use_denoised=False)
    kept = lists[lists.kind == "undenoised"].reset_index(drop=True)
    assert len(undenoised) == 6 and [undenoised.docs(i) for i in range(6)] == list(kept.doc_ids)
    short = training_lists(path, list_size=3)
    for i, full in enumerate(lists.itertuples()):
        assert short.docs(i) == full.doc_ids[:3] and short.ce_scores[i].tolist() == pytest.approx(full.ce_scores[:3],
                                                                                                  nan_ok=True)
    with pytest.raises(RqaError, match="list_size 7"):
        training_lists(path, list_size=7)
    with pytest.raises(RqaError, match="no lists file"):
        training_lists(tmp_path / "none.parquet")


def test_lists_round_trip_through_parquet(tmp_path):
    lists, _ = _build(*_hand_case(), list_size=6)
    path = write_lists(lists, tmp_path / "augment" / "lists.parquet")
    assert [p.name for p in path.parent.iterdir()] == ["lists.parquet"]
    back = read_lists(path)
    assert list(back.columns) == list(lists.columns)
    assert back.query_id.tolist() == lists.query_id.tolist()
    assert back.kind.tolist() == lists.kind.tolist()
    assert back.doc_ids.tolist() == lists.doc_ids.tolist()
    assert back.labels.tolist() == lists.labels.tolist()
    assert back.positive_source.tolist() == lists.positive_source.tolist()
    assert back.fallback.tolist() == lists.fallback.tolist()
    for got, want in zip(back.ce_scores, lists.ce_scores):
        np.testing.assert_array_equal(got, want)  # NaN where not scored
    with pytest.raises(RqaError, match="no lists file"):
        read_lists(tmp_path / "missing.parquet")


@pytest.mark.parametrize("neg, pos", [(0.5, 0.9), (0.1, 0.5)])
def test_a_probability_exactly_at_a_threshold_is_dropped(neg, pos):
    split, candidates, ce_scores = _hand_case()
    ce_scores["q1"] = {d: _logit(0.01) for d in PROBS}
    ce_scores["q1"]["d3"] = 0.0  # sigmoid(0) = 0.5 exactly: neither < neg nor > pos
    lists, summary = _build(split, candidates, ce_scores, neg_threshold=neg, pos_threshold=pos)
    assert summary["dropped"] == {"q1": ["d3"]}
    assert summary["pseudo"] == {"q1": []}
    assert "d3" not in _row(lists, "q1", "denoised").doc_ids


# --- open-domain QA (NQ): passages that contain an answer are never negatives -------------------

QA_TEXTS = {
    "p": "Mount Everest is the highest mountain on Earth.",
    "d1": "Climbers call Mount Everest Chomolungma.",          # contains the answer, CE-confident
    "d2": "MOUNT EVEREST rises 8,849 metres.",                  # contains it (uncased), CE 0.05
    "d3": "Everest base camp sits below the Khumbu icefall.",   # "Everest" alone: no match
    "d4": "K2 is the second highest mountain.",
    "d5": "The summit of mount everest's north face.",          # contains it, CE 0.93
    "d6": "Kangchenjunga lies in Sikkim.",
    "d7": "Lhotse is joined to it by the South Col.",
    "d8": "Mountaineering in the Alps.",
    "d9": "Mount Everest was surveyed in 1856.",                # contains it, beyond the scored window
    "d10": "Mount Kenya is in Africa.",
}


def test_answer_bearing_candidates_by_dpr_has_answer():
    found = answer_bearing({"q1": CANDIDATES, "q2": ["d1"]}, {"q1": ["Mount Everest"]},
                           lambda ids: [QA_TEXTS[d] for d in ids])
    assert found == {"q1": {"p", "d1", "d2", "d5", "d9"}, "q2": set()}


def test_answer_bearing_passages_are_never_negatives_but_may_be_pseudo_positives():
    split, candidates, ce_scores = _hand_case()
    bearing = answer_bearing(candidates, {"q1": ["Mount Everest"]}, lambda ids: [QA_TEXTS[d] for d in ids])
    lists, summary = _build(split, candidates, ce_scores, answer_bearing=bearing)
    denoised, undenoised = _row(lists, "q1", "denoised"), _row(lists, "q1", "undenoised")
    assert denoised.doc_ids[0] == "d1" and denoised.positive_source == "pseudo"
    assert set(denoised.doc_ids[1:]) == {"d4", "d6", "d7"}      # d2 (CE 0.05) is kept out
    assert not set(undenoised.doc_ids[1:]) & {"d1", "d2", "d5", "d9"}
    assert summary["dropped"] == {"q1": ["d3"]}                 # d5 is not counted as a false negative
    assert summary["answer_bearing_candidates"] == 4            # d1, d2, d5, d9 (p is labelled)
    _, plain = _build(*_hand_case())                           # without answers: d5 is a dropped false negative
    assert plain["dropped"] == {"q1": ["d3", "d5"]} and "answer_bearing_candidates" not in plain


# --- calibration that does not move with the scored window's positive rate ---------------------

def _synthetic_pairs(n_negatives, n_positives=2000, seed=0):
    """Listwise-CE-like logits: positives ~ N(2, 1), unlabelled candidates ~ N(-1, 1)."""
    rng = np.random.default_rng(seed)
    logits = np.concatenate([rng.normal(2.0, 1.0, n_positives), rng.normal(-1.0, 1.0, n_negatives)])
    return logits, np.array([1] * n_positives + [0] * n_negatives)


def test_platt_at_a_fixed_prior_keeps_the_thresholds_where_the_pairs_own_rate_moves_them():
    at_1_4, at_1_49 = _synthetic_pairs(8_000), _synthetic_pairs(98_000)
    own = [Calibrator("platt").fit(*pairs) for pairs in (at_1_4, at_1_49)]
    fixed = [Calibrator("platt", prior=0.2).fit(*pairs) for pairs in (at_1_4, at_1_49)]
    for prob in (0.1, 0.9):
        # the pairs' own rate: the logit where p = 0.9 moves by about log(49/4) / a (a ~ 3 here)
        assert own[1].logit_at(prob) - own[0].logit_at(prob) > 0.6
        assert abs(fixed[1].logit_at(prob) - fixed[0].logit_at(prob)) < 0.05
        # at a 1:4 set the prior 0.2 is the set's own rate: the same fit
        assert fixed[0].logit_at(prob) == pytest.approx(own[0].logit_at(prob), abs=1e-4)
    assert Calibrator.from_dict(fixed[1].to_dict()).logit_at(0.9) == pytest.approx(fixed[1].logit_at(0.9))
    with pytest.raises(RqaError, match="between 0 and 1"):
        Calibrator("platt", prior=1.0)


def test_calibration_settings_count_what_each_setting_makes_of_the_same_scores():
    split, candidates, ce_scores = _hand_case()
    settings = calibration_settings(split, candidates, ce_scores, rule=DenoiseRule(score_depth=SCORE_DEPTH, rank_keep_from=5))
    # sigmoid reads PROBS: d1 pseudo (d5 is confident too but only one is taken), d3 and d5 dropped
    assert {k: settings["sigmoid"][k] for k in ("pseudo_positives", "denoised_negatives", "dropped_as_false_negative")} \
        == {"pseudo_positives": 1, "denoised_negatives": 4, "dropped_as_false_negative": 2}
    assert settings["sigmoid"]["logit_at_0.9"] == pytest.approx(_logit(0.9))
    # rank: p is the CE's top-1, so no pseudo-positive; ranks >= 5 (d2, d4, d6) are negatives, d1 d5 d3 d7 dropped
    assert {k: settings["rank"][k] for k in ("pseudo_positives", "denoised_negatives", "dropped_as_false_negative")} \
        == {"pseudo_positives": 0, "denoised_negatives": 3, "dropped_as_false_negative": 4}
    assert set(settings) == {"platt, prior 0.2", "platt, prior 0.5", "platt, pairs' own rate", "sigmoid", "rank"}

"""The denoising audit: hidden positives, and precision/recall on a case whose answer is known."""
import math

import pytest

from rqakit.audit import audit_curve, hide_one_positive
from rqakit.data.collection import Split
from rqakit.errors import RqaError


def split() -> Split:
    return Split("synthetic/train", {"q1": "one", "q2": "two", "q3": "three"},
                 {"q1": {"a": 1, "b": 1}, "q2": {"c": 2, "d": 1, "e": 1}, "q3": {"f": 1, "n": 0}}, name="train")


def test_one_positive_of_each_multi_positive_query_is_hidden_and_only_that():
    full = split()
    visible, hidden = hide_one_positive(full, seed=0)
    assert set(hidden) == {"q1", "q2"}                       # q3 has one positive
    for qid, doc in hidden.items():
        assert doc in full.positives(qid) and doc not in visible.qrels[qid]
        assert set(visible.qrels[qid]) == set(full.qrels[qid]) - {doc}
    assert visible.qrels["q3"] == full.qrels["q3"] and full.qrels["q1"] == {"a": 1, "b": 1}  # input untouched
    assert hide_one_positive(full, seed=0)[1] == hidden      # fixed by the seed
    assert {hide_one_positive(full, seed=s)[1]["q2"] for s in range(20)} == {"c", "d", "e"}


# Known answer: sigmoid calibration, so p = sigmoid(logit) exactly.
# q1: visible a, hidden b (p .73); x1 p .27, x2 p .047, x3 p .018.
# q2: visible c, hidden d (p .12); x4 p .62, x5 and x6 p .007.
# q3 has no hidden positive: its dropped candidate y1 must not count.
VISIBLE = Split("synthetic/train", {"q1": "", "q2": "", "q3": ""},
                {"q1": {"a": 1}, "q2": {"c": 1}, "q3": {"f": 1}}, name="train")
HIDDEN = {"q1": "b", "q2": "d"}
CANDIDATES = {"q1": ["b", "x1", "a", "x2", "x3"], "q2": ["x4", "d", "x5", "x6", "c"], "q3": ["y1", "f", "y2"]}
LOGITS = {"q1": {"a": 3.0, "b": 1.0, "x1": -1.0, "x2": -3.0, "x3": -4.0},
          "q2": {"c": 3.0, "d": -2.0, "x4": 0.5, "x5": -5.0, "x6": -5.0},
          "q3": {"f": 3.0, "y1": 1.0, "y2": -5.0}}


def test_precision_and_recall_per_threshold_match_the_hand_count():
    curve = audit_curve(VISIBLE, HIDDEN, CANDIDATES, LOGITS, thresholds=[0.1, 0.2, 0.5, 0.8],
                        calibration="sigmoid", score_depth=5).set_index("neg_threshold")
    # t = 0.1: dropped b, x1 (q1) and x4, d (q2) -> 2 of 4 hidden; both hidden positives caught
    assert curve.loc[0.1, ["dropped", "dropped_hidden", "hidden_in_window"]].tolist() == [4, 2, 2]
    assert curve.loc[0.1, "precision"] == 0.5 and curve.loc[0.1, "recall"] == 1.0
    # t = 0.2: b, x1, x4 -> 1 of 3; d (p .12) is kept as a negative
    assert curve.loc[0.2, "precision"] == pytest.approx(1 / 3) and curve.loc[0.2, "recall"] == 0.5
    # t = 0.5: b and x4
    assert curve.loc[0.5, "precision"] == 0.5 and curve.loc[0.5, "recall"] == 0.5
    # t = 0.8: nothing dropped
    assert curve.loc[0.8, "dropped"] == 0 and math.isnan(curve.loc[0.8, "precision"]) and curve.loc[0.8, "recall"] == 0
    assert curve.loc[0.1, "logit_at_threshold"] == pytest.approx(math.log(0.1 / 0.9))


def test_a_hidden_positive_outside_the_scored_window_is_not_counted_in_recall():
    curve = audit_curve(VISIBLE, HIDDEN, CANDIDATES, LOGITS, thresholds=[0.1], calibration="sigmoid", score_depth=1)
    # window of 1: q1 scores only b (hidden, dropped), q2 only x4 (dropped); d lies beyond the window
    assert curve.loc[0, ["hidden_in_window", "dropped", "dropped_hidden"]].tolist() == [1, 2, 1]
    assert curve.loc[0, "recall"] == 1.0 and curve.loc[0, "precision"] == 0.5


def test_a_pseudo_positive_hidden_positive_is_kept_out_not_dropped():
    logits = {**LOGITS, "q1": {**LOGITS["q1"], "b": 4.0}}      # p .98 > 0.9: b leads a denoised list
    curve = audit_curve(VISIBLE, HIDDEN, CANDIDATES, logits, thresholds=[0.1], calibration="sigmoid", score_depth=5)
    row = curve.iloc[0]
    assert (row["dropped_hidden"], row["kept_out_hidden"], row["kept_out_recall"]) == (1, 2, 1.0)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(RqaError, match="calibration 'rank' has none"):
        audit_curve(VISIBLE, HIDDEN, CANDIDATES, LOGITS, calibration="rank")
    with pytest.raises(RqaError, match="between 0 and the positive threshold 0.9"):
        audit_curve(VISIBLE, HIDDEN, CANDIDATES, LOGITS, thresholds=[0.95], calibration="sigmoid")
    with pytest.raises(RqaError, match="no audited query has candidates"):
        audit_curve(VISIBLE, HIDDEN, {"q3": CANDIDATES["q3"]}, LOGITS, calibration="sigmoid")


def test_the_toy_profile_audit_from_the_command_line(toy_ws, capsys):
    """`rqakit audit` on the toy slice: every training query has two positives; the warm models
    are retrained on the visible labels beside (never inside) the profile's stage folders."""
    import json

    from rqakit.audit import AuditWorkspace, audit_root
    from rqakit.cli import main

    workdir = toy_ws.config.runtime.workdir
    settings = [f"{k}={v}" for k, v in {"data.max_train_queries": 48, "runtime.workdir": workdir}.items()]
    assert main(["audit", "--profile", "toy", "--set", *settings]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["queries_audited"] == len(toy_ws.train.queries) == 48     # toy: a full and a partial positive each
    assert 0 < out["hidden_in_window"] <= 48 and out["leak"] is None
    curve = out["curve"]
    assert [r["neg_threshold"] for r in curve] == sorted(r["neg_threshold"] for r in curve)
    recalls, dropped = [r["recall"] for r in curve], [r["dropped"] for r in curve]
    assert recalls == sorted(recalls, reverse=True) and dropped == sorted(dropped, reverse=True)  # higher t drops fewer
    assert any(r["dropped_hidden"] > 0 for r in curve)
    at = out["at_neg_threshold"]
    assert at["neg_threshold"] == 0.1 and at == next(r for r in curve if r["neg_threshold"] == 0.1)
    retrained = AuditWorkspace(toy_ws.config, 0, toy_ws.root)
    assert retrained.root == audit_root(toy_ws.root) / "s0" and (retrained.root / "warmup_ce").is_dir()
    assert all(h not in retrained.train.qrels[q] for q, h in retrained.hidden.items())
    assert not (toy_ws.root / "audit").exists()
    # the profile's own warm models saw the hidden positives: the run says so
    assert main(["audit", "--profile", "toy", "--teacher", "profile", "--thresholds", "0.1", "0.5",
                 "--set", *settings]) == 0
    leaky = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert leaky["leak"] and [r["neg_threshold"] for r in leaky["curve"]] == [0.1, 0.5]


def test_the_profile_teacher_reads_the_scores_augment_kept(toy_ws, monkeypatch):
    """With the profile's warm models, augment has scored these very pairs: the audit reuses its
    logits instead of scoring again, and draws the curve it would draw from fresh scores."""
    from rqakit import audit
    from rqakit.stages import augment, warmup_ce, warmup_de

    augment.run(toy_ws, log=lambda *_: None)
    wde, wce = warmup_de.run(toy_ws, log=lambda *_: None), warmup_ce.run(toy_ws, log=lambda *_: None)
    candidates, fresh, _ = augment.score_candidates(toy_ws, wde, wce)
    visible, hidden = hide_one_positive(toy_ws.train, 0)
    expected = audit_curve(visible, hidden, candidates, fresh, thresholds=(0.1, 0.5), score_depth=toy_ws.cfg.augment.score_depth)

    def no_scoring(*args, **kwargs):
        raise AssertionError("the audit scored pairs that augment had scored")
    monkeypatch.setattr(augment, "score_window", no_scoring)
    out = audit.run_audit(toy_ws.config, teacher="profile", thresholds=(0.1, 0.5), force=True, log=lambda *_: None)
    got = [{k: r[k] for k in ("neg_threshold", "dropped", "dropped_hidden", "recall")} for r in out["curve"]]
    assert got == [{k: r[k] for k in ("neg_threshold", "dropped", "dropped_hidden", "recall")}
                   for r in expected.to_dict(orient="records")]


def test_audit_errors_name_the_fix(tmp_path, capsys):
    from rqakit.cli import main

    assert main(["audit", "--profile", "toy", "--thresholds", "1.5"]) == 2
    assert "must lie strictly between 0 and 1" in capsys.readouterr().err
    assert main(["audit", "--profile", "toy", "--set", f"runtime.workdir={tmp_path}",
                 "augment.calibration=rank"]) == 2
    assert "calibration 'rank' has none" in capsys.readouterr().err

"""The walkthrough's steps against hand-computed values, and its notebook on a SciFact slice."""
import json
import math

import nbformat
import numpy as np
import pytest

from rqakit import walkthrough as wt
from rqakit.data import load_corpus, load_split
from rqakit.data.collection import Split
from rqakit.errors import RqaError
from rqakit.mining import Calibrator

# One list, m = 2: P_de = (1/3, 2/3), P_ce = (3/4, 1/4).
S_DE, S_CE = [0.0, math.log(2.0)], [math.log(3.0), 0.0]
P_DE, P_CE = np.array([1 / 3, 2 / 3]), np.array([3 / 4, 1 / 4])


def test_list_distributions_are_softmaxes_over_the_list():
    frame = wt.list_distributions(S_DE, S_CE, ["p", "n"])
    assert frame["P_de"].tolist() == pytest.approx(P_DE.tolist())
    assert frame["P_ce"].tolist() == pytest.approx(P_CE.tolist())
    assert frame["doc_id"].tolist() == ["p", "n"]


def test_kl_both_directions_and_where_the_gradient_goes():
    kl = wt.kl_gradients(S_DE, S_CE).set_index(["kl_direction", "kl_grad_to_ce"])
    code = float(np.sum(P_CE * np.log(P_CE / P_DE))) / 2        # KL(P_ce || P_de), mean over m = 2 elements
    paper = float(np.sum(P_DE * np.log(P_DE / P_CE))) / 2       # KL(P_de || P_ce), Eq. 4
    assert kl.loc[("code", False), "KL"] == pytest.approx(code)
    assert kl.loc[("paper", False), "KL"] == pytest.approx(paper) and paper != pytest.approx(code)
    # code direction: dKL/ds_de = (P_de - P_ce) / m; no gradient to the re-ranker unless asked
    assert kl.loc[("code", False), "grad_s_de"] == pytest.approx((P_DE - P_CE) / 2)
    assert kl.loc[("code", False), "|grad_s_ce|"] == 0.0 and kl.loc[("paper", False), "|grad_s_ce|"] == 0.0
    assert kl.loc[("code", True), "|grad_s_ce|"] > 0 and kl.loc[("paper", True), "|grad_s_ce|"] > 0
    # the retriever's gradient does not depend on whether the re-ranker also gets one
    assert kl.loc[("paper", True), "grad_s_de"] == pytest.approx(kl.loc[("paper", False), "grad_s_de"])


def test_supervised_loss_is_minus_log_p_positive_with_gradient_p_minus_e0():
    sup = wt.supervised_loss(S_CE)
    assert sup["L_sup"] == pytest.approx(-math.log(0.75))
    assert sup["grad_s_ce"] == pytest.approx([-0.25, 0.25])


SPLIT = Split("synthetic/train", {"q1": "a query"}, {"q1": {"p": 1}}, name="slice")
CANDIDATES = {"q1": ["n1", "p", "n2", "n3", "h", "n4"]}


def test_a_training_list_has_the_positive_first_and_the_hardest_negatives():
    assert wt.training_list(SPLIT, CANDIDATES, "q1", 3) == ["p", "n1", "n2"]
    assert wt.training_list(SPLIT, CANDIDATES, "q1", 3, hidden={"q1": "h"}) == ["p", "n1", "h"]   # shown last
    with pytest.raises(RqaError, match="query 'q9' is not in the slice"):
        wt.training_list(SPLIT, CANDIDATES, "q9", 3)
    with pytest.raises(RqaError, match="fewer than m-1 = 7; mine deeper or lower the list size"):
        wt.training_list(SPLIT, CANDIDATES, "q1", 8)


def test_denoising_table_is_the_augment_rule_on_one_query():
    logits = {"q1": {"p": 3.0, "n1": 1.0, "n2": -4.0, "n3": 3.5, "h": -1.0}}
    table = wt.denoising_table(SPLIT, {"q1": ["n1", "p", "n2", "n3", "h"]}, logits, "q1", Calibrator("sigmoid"),
                               score_depth=5, hidden={"q1": "h"}).set_index("doc_id")
    # sigmoid: n1 .73 dropped, n2 .018 negative, n3 .97 pseudo-positive, h .27 dropped
    assert table["decision"].to_dict() == {"n1": "dropped", "p": "positive (label)", "n2": "negative",
                                           "n3": "pseudo-positive", "h": "dropped"}
    assert table.loc["h", "who"] == "hidden positive" and table.loc["p", "who"] == "labelled positive"
    assert table.loc["n1", "probability"] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]


def test_positive_ranks_by_retrieval_order_and_by_ce_logit():
    logits = {"q1": {"n1": 1.0, "p": 3.0, "n2": -4.0, "n3": 3.5}}
    ranks = wt.positive_ranks(SPLIT, {"q1": ["n1", "p", "n2", "n3"]}, logits, score_depth=4).iloc[0]
    assert (ranks["retriever rank"], ranks["re-ranker rank"], ranks["re-ranker RR"]) == (2, 2, 0.5)
    assert wt.positive_ranks(SPLIT, {"q1": ["n1", "p"]}, logits, score_depth=1).empty   # positive not scored


def test_a_slice_hides_one_positive_per_multi_positive_query(tmp_path):
    train, corpus = load_split("rqakit/toy/train"), load_corpus("rqakit/toy/train")
    sl = wt.take_slice(train, corpus, n_queries=4, n_multi=4, pool_depth=5, seed=3)
    assert len(sl.split.queries) == 4 and set(sl.hidden) == set(sl.split.queries)   # toy: two positives each
    for qid, doc in sl.hidden.items():
        assert doc in train.positives(qid) and doc not in sl.split.qrels[qid] and doc in sl.pool
    with pytest.raises(RqaError, match="cannot take 2 multi-positive and 2 single-positive queries"):
        wt.take_slice(train, corpus, n_queries=4, n_multi=2)


def test_dynamic_steps_pull_the_retriever_towards_the_reranker(tiny_cache):
    from rqakit.models import CrossEncoder, DualEncoder
    from rqakit.objectives import ListExample
    from rqakit.types import Doc

    de = DualEncoder.from_backbone("tiny", pooling="mean", normalize=True, temperature=0.05)
    ce = CrossEncoder.from_backbone("tiny", pooling="mean")
    docs = [Doc(f"d{i}", "", text) for i, text in enumerate(["red fox den", "blue whale song", "green frog pond"])]
    lists = [ListExample("where does the red fox live", docs)]
    losses, dists = wt.dynamic_steps(de, ce, lists, steps=4, lr=3e-4, watch=0, seed=1)
    assert losses["step"].tolist() == [1, 2, 3, 4] and dists["step"].unique().tolist() == [0, 1, 2, 3, 4]
    kl = {step: float(np.sum(g.P_ce * np.log(g.P_ce / g.P_de))) for step, g in dists.groupby("step")}
    assert kl[4] < 0.5 * kl[0]                      # KL(P_ce || P_de) of the watched list shrinks
    assert dists.groupby("step")["P_de"].sum().tolist() == pytest.approx([1.0] * 5)


def test_the_committed_notebook_is_thin_and_clean():
    from rqakit.pipeline import notebooks_dir

    nb = nbformat.read(notebooks_dir() / "walkthrough.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert not any("def " in c.source.replace("def save", "") for c in code)   # logic lives in rqakit


@pytest.mark.slow
def test_the_walkthrough_runs_on_a_scifact_slice_with_minilm(scifact_home, tmp_path):
    """The notebook end to end with papermill, with the parameters it is committed with (those of
    the executed copy in reports/walkthrough/): only where its outputs go is set."""
    import papermill

    from rqakit.pipeline import kernel_environment, notebooks_dir

    out = tmp_path / "out"
    parameters = {"out_dir": str(out)}
    with kernel_environment():
        papermill.execute_notebook(str(notebooks_dir() / "walkthrough.ipynb"), str(tmp_path / "walkthrough.ipynb"),
                                   parameters=parameters, progress_bar=False)
    summary = json.loads((out / "walkthrough.json").read_text())
    assert len(summary["list"]) == 4 and summary["hidden_positive"] is not None
    committed = json.loads((notebooks_dir().parent / "reports" / "walkthrough" / "walkthrough.json").read_text())
    for key in ("query_id", "hidden_positive", "list"):   # the committed copy is what the notebook makes
        assert summary[key] == committed[key], key
    assert summary["L_sup"] == pytest.approx(committed["L_sup"], abs=1e-3)
    assert sum(summary["P_de"]) == pytest.approx(1.0) and sum(summary["P_ce"]) == pytest.approx(1.0)
    kl = {(r["kl_direction"], r["kl_grad_to_ce"]): r for r in summary["kl"]}
    assert kl[("code", False)]["|grad_s_ce|"] == 0 and kl[("code", True)]["|grad_s_ce|"] > 0
    assert len(summary["dynamic_losses"]) == 6 and len(summary["warmup_loss"]) == 20
    recalls = [r["recall"] for r in summary["audit"]]
    assert recalls == sorted(recalls, reverse=True)
    decisions = {"positive (label)", "negative", "dropped", "pseudo-positive"}
    assert {r["decision"] for r in summary["denoising"]} <= decisions
    for name in ("warmup_loss", "distributions", "dynamic_steps", "denoising", "audit"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name


def test_a_teacher_leads_when_it_ranks_the_positive_first_and_more_surely_than_the_retriever():
    assert wt.teacher_leads(S_DE, S_CE)                           # P_ce(pos) 0.75 > P_de(pos) 1/3
    assert not wt.teacher_leads(S_CE, S_DE)                       # ranks a negative first
    assert not wt.teacher_leads([math.log(9.0), 0.0], S_CE)       # right, but less sure than the retriever (0.9)

"""The explorer on toy runs: systems, per-query values, side by side, worked examples, the notebook."""
import json

import nbformat
import pandas as pd
import pytest

from rqakit.errors import RqaError
from rqakit.evaluation import evaluate_split
from rqakit.explore import NOT_RERANKED, RunFolder, default_pair, explorer_widget
from rqakit.runs import ranked
from rqakit.stages import joint

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture(scope="module")
def run_folder(toy_ws):
    """The session's small toy runs with a static and a dynamic joint run (seed 1)."""
    joint.run(toy_ws, "static", seed=1, log=QUIET)
    joint.run(toy_ws, "dynamic", seed=1, log=QUIET)
    return RunFolder(toy_ws.root)


def test_systems_are_every_test_run_of_the_latest_stage_results(run_folder, toy_ws):
    systems = run_folder.systems()
    assert {"baselines/bm25", "warmup_de/warmup_de", "warmup_ce/warmup_ce.warmup_de", "joint-static-m4-s1/retriever",
            "joint-dynamic-m4-s1/retriever", "joint-dynamic-m4-s1/reranker"} <= set(systems)
    assert "joint-static-m4-s1/reranker" not in systems                       # static keeps the warm re-ranker
    assert default_pair(run_folder) == ("joint-static-m4-s1/retriever", "joint-dynamic-m4-s1/retriever")
    assert run_folder.config.to_dict() == toy_ws.config.to_dict()             # read back from config.json


def test_without_joint_runs_the_default_pair_is_bm25_against_the_warm_retriever(run_folder, tmp_path):
    for stage in ("baselines", "st_mnrl", "warmup_de", "warmup_ce"):   # a run stopped before the joint runs
        if stage in run_folder.stages:
            (tmp_path / stage).symlink_to(run_folder.root / stage, target_is_directory=True)
    partial = RunFolder(tmp_path)
    assert "baselines/zeroshot-cls" in partial.systems()
    assert default_pair(partial) == ("baselines/bm25", "warmup_de/warmup_de")


def test_per_query_values_average_to_the_stage_metrics(run_folder, toy_ws):
    a, b = default_pair(run_folder)
    frame = run_folder.compare(a, b)
    assert len(frame) == len(toy_ws.test.qrels) and list(frame.columns) == ["query", "A", "B", "B - A"]
    metrics = json.loads((run_folder.stages["joint-dynamic-m4-s1"] / "metrics.json").read_text())["retriever"]
    assert frame["B"].mean() == pytest.approx(metrics["nDCG@10"])
    assert frame["B - A"].tolist() == sorted(frame["B - A"], reverse=True)
    assert frame["A"].mean() == pytest.approx(evaluate_split(run_folder.run(a), toy_ws.test, ["nDCG@10"])["nDCG@10"])


def test_side_by_side_shows_both_top_k_with_labels_ce_logits_and_drops(run_folder, toy_ws):
    a, b = default_pair(run_folder)
    examples = run_folder.worked_examples(a, b, n=2)
    compare = run_folder.compare(a, b)
    assert all(compare.loc[q, "B - A"] > 0 for q in examples["helped"])
    assert all(compare.loc[q, "B - A"] < 0 for q in examples["hurt"])
    qid = (examples["helped"] + examples["hurt"])[0]
    table = run_folder.side_by_side(qid, a, b, k=5)
    assert len(table) == 5 and table.index.tolist() == [1, 2, 3, 4, 5]
    side_a = table[f"A: {a}"]
    assert side_a["doc_id"].tolist() == [d for d, _ in ranked(run_folder.run(a)[qid])[:5]]
    assert side_a["label"].tolist() == [toy_ws.test.qrels[qid].get(d, 0) for d in side_a["doc_id"]]
    warm_ce = run_folder.run("warmup_ce/warmup_ce.warmup_de")[qid]
    for d, logit in zip(side_a["doc_id"], side_a["CE logit"]):
        assert (logit == NOT_RERANKED and d not in warm_ce) or logit == pytest.approx(warm_ce[d], abs=5e-4)
    cand = pd.read_parquet(run_folder.stages["augment"] / "candidates.parquet")
    dropped = cand[cand.fate == "dropped"].groupby("doc_id").size()
    assert side_a["dropped"].tolist() == [int(dropped.get(d, 0)) for d in side_a["doc_id"]]


def test_bad_input_is_one_line_that_says_what_to_do(run_folder, tmp_path):
    with pytest.raises(RqaError, match=f"no run folder at {tmp_path.resolve() / 'nope'}; give the <workdir>/<profile>"):
        RunFolder(tmp_path / "nope")
    (tmp_path / "empty" / "warmup_de").mkdir(parents=True)
    with pytest.raises(RqaError, match="holds no completed stage with test runs; run the profile first"):
        RunFolder(tmp_path / "empty")
    with pytest.raises(RqaError, match="no system 'joint-bogus/retriever' .*; choose one of: baselines/bm25"):
        run_folder.run("joint-bogus/retriever")
    with pytest.raises(RqaError, match="query 'q-nope' is not in the test split"):
        run_folder.side_by_side("q-nope", *default_pair(run_folder))


def test_the_widget_opens_on_a_query_and_redraws_once_per_change(run_folder):
    """It opens on the query B helped most, scatter and table drawn; each change of A, B, query or
    k draws once, in place (the scatter is an image widget, never a pyplot figure)."""
    ui = explorer_widget(run_folder, k=3)
    pick_a, pick_b = ui.children[0].children
    pick_q, depth = ui.children[1].children
    scatter = ui.children[2]
    assert (pick_a.value, pick_b.value) == default_pair(run_folder)
    compare = run_folder.compare(pick_a.value, pick_b.value)
    assert [v for _, v in pick_q.options] == compare.index.tolist()           # the scatter's order: B - A
    assert pick_q.value == compare.index[0] and ui.state["draws"] == 1         # opened on a query, drawn
    assert bytes(scatter.value[:8]) == b"\x89PNG\r\n\x1a\n"
    first = bytes(scatter.value)
    pick_b.value = "baselines/bm25"
    assert ui.state["draws"] == 2 and bytes(scatter.value) != first
    assert [v for _, v in pick_q.options] == run_folder.compare(pick_a.value, "baselines/bm25").index.tolist()
    assert pick_q.value == pick_q.options[0][1]
    pick_q.value = pick_q.options[1][1]
    depth.value = 5
    assert ui.state["draws"] == 4


def test_ask_a_free_text_query_of_the_run_s_retriever_and_re_ranker(run_folder, toy_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("RQAKIT_CACHE", str(tmp_path))   # the corpus embeddings' cache
    b = default_pair(run_folder)[1]
    qid, text = next(iter(toy_ws.test.queries.items()))
    hits = run_folder.ask(text, k=5)                    # a test query's text: the run's ranking, labelled
    assert hits.index.tolist() == [1, 2, 3, 4, 5]
    assert hits["doc_id"].tolist() == [d for d, _ in ranked(run_folder.run(b)[qid])[:5]]
    assert hits["label"].tolist() == [toy_ws.test.qrels[qid].get(d) for d in hits["doc_id"]]
    reranked = run_folder.ask("where do otters live", rerank="joint-dynamic-m4-s1/reranker", k=3)
    assert "label" not in reranked and reranked["reranker"].is_monotonic_decreasing
    with pytest.raises(RqaError, match="has no saved dual encoder"):
        run_folder.ask(text, system="baselines/bm25")


@pytest.mark.slow
def test_the_explorer_notebook_renders_worked_examples_under_papermill(run_folder, tmp_path):
    import papermill

    from rqakit.pipeline import kernel_environment, notebooks_dir

    out = tmp_path / "out"
    with kernel_environment():
        papermill.execute_notebook(str(notebooks_dir() / "explorer.ipynb"), str(tmp_path / "explorer.ipynb"),
                                   parameters={"run_folder": str(run_folder.root), "interactive": False,
                                               "out_dir": str(out), "n_examples": 2,
                                               "free_query": "where do otters live"}, progress_bar=False)
    summary = json.loads((out / "explorer.json").read_text())
    a, b = default_pair(run_folder)
    assert (summary["A"], summary["B"]) == (a, b)
    assert summary["examples"] == run_folder.worked_examples(a, b, n=2)
    assert (out / "figures" / "scatter.png").stat().st_size > 1000
    executed = nbformat.read(tmp_path / "explorer.ipynb", as_version=4)
    text = "\n".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert all(f"query {q} " in text for q in summary["examples"]["helped"] + summary["examples"]["hurt"])
    assert "static rendering" in text
    shown = [o["data"].get("text/plain", "") for o in executed.cells[-1].outputs if "data" in o]
    assert any("doc_id" in table and "retriever" in table for table in shown)   # the free query's top k


def test_the_committed_explorer_copy_shows_the_committed_toy_report():
    """reports/explorer/toy (`make explorer PROFILE=toy`) was executed on the runs behind reports/toy:
    its two systems' means are the report's static and dynamic retrievers of the same seed."""
    from rqakit.pipeline import notebooks_dir

    reports = notebooks_dir().parent / "reports"
    summary = json.loads((reports / "explorer" / "toy" / "explorer.json").read_text())
    rows = json.loads((reports / "toy" / "results.json").read_text())
    ndcg = {(r["system"], r["seed"]): r["value"] for r in rows if r["table"] == "retrieval" and r["metric"] == "nDCG@10"}
    for side in ("A", "B"):
        stage, name = summary[side].split("/")
        variant, seed = stage.split("-")[1], int(stage.rsplit("-s", 1)[1])
        assert name == "retriever" and summary["mean"][side] == pytest.approx(ndcg[(variant, seed)], abs=1e-9), side

"""The report built from small hand-written artifact folders: tidy rows, every table and figure,
mean ± sd, the dynamic-vs-static paired test, the hybrid's weight chosen on validation only, and
the paper's numbers kept apart."""
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rqakit.config import RunConfig, load_config
from rqakit.data.collection import Split
from rqakit.errors import RqaError
from rqakit.evaluation import evaluate_run
from rqakit.report import build_report, update_run_rows
from rqakit.report.results import FUSION_METHODS, FUSION_WEIGHTS, choose_fusion, fuse

MEASURES = ["nDCG@10", "RR@10", "R@100"]


def g(rank: int) -> float:
    """nDCG@10 of a query whose single relevant document sits at `rank`."""
    return 1.0 / math.log2(rank + 1)


# Test queries t1..t4, relevant document r<i>. Where each run ranks it:
DYNAMIC_RANKS = {1: [1, 1, 2, 4], 2: [1, 2, 1, 4]}
STATIC_RANKS = {1: [2, 3, 3, 1], 2: [3, 2, 3, 2]}
# Validation query v1 (relevant d1): BM25 has it first, the dense retriever third, so a large BM25 weight
# wins on validation. On test BM25 ranks the relevant document 5th: a large BM25 weight loses there.
BM25_VAL = {"v1": {"d1": 2.0, "d2": 1.0}}
DENSE_VAL = {"v1": {"d2": 3.0, "d3": 2.0, "d1": 1.0}}


@dataclass
class Workspace:
    """What the report reads of a workspace: the artifact root, the config and two splits."""
    root: Path
    cfg: RunConfig
    val: Split
    test: Split
    compute_dtype: str = "bfloat16"

    def folder(self, name: str) -> Path:
        return self.root / name

    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def apply(self):
        return self

    def build(self, folder, cfg_hash, build, *, force=False, every_rank=True, log=print):
        from rqakit.artifacts import run_stage

        return run_stage(folder, cfg_hash, build, config=self.config_dict(), force=force, every_rank=every_rank,
                         log=log)


def ranked_run(ranks: list[int]) -> dict:
    """t<i>: relevant r<i> at ranks[i-1] among fillers f<i>_<j>, 6 documents, scores 6..1."""
    run = {}
    for i, rank in enumerate(ranks, start=1):
        docs = [f"f{i}_{j}" for j in range(5)]
        docs.insert(rank - 1, f"r{i}")
        run[f"t{i}"] = {d: float(6 - k) for k, d in enumerate(docs)}
    return run


def write_run(path: Path, run: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{q} Q0 {d} {k} {s!r} t" for q, docs in run.items()
             for k, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1)]
    path.write_text("\n".join(lines) + "\n")


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def metrics(ndcg: float) -> dict:
    return {"nDCG@10": ndcg, "RR@10": ndcg - 0.05, "R@100": 0.9}


def joint_folder(root: Path, variant: str, m: int, seed: int, ndcg: float, ranks: list[int]) -> None:
    folder = root / f"joint-{variant}-m{m}-s{seed}"
    evaluated = {"retriever": metrics(ndcg)}  # what joint.report_reads has a run evaluate (joint.list_size 4)
    if variant == "dynamic":
        evaluated["reranker"] = metrics(ndcg + 0.1)
        if m == 4:
            evaluated["reranker@bm25"] = metrics(ndcg + 0.05)
    write(folder / "metrics.json", evaluated)
    write(folder / "manifest.json", {"wall_time_s": 10.0 + seed, "steps": 5, "mean_step_s": 0.5})
    curves = [{"step": s, "retriever_nDCG@10": 0.1 * s, "retriever_RR@10": 0.1 * s} for s in range(3)]
    if variant != "static":
        for c in curves:
            c.update({"reranker_nDCG@10": 0.4 + 0.05 * c["step"], "reranker_RR@10": 0.3})
    write(folder / "curves.json", curves)
    write_run(folder / "runs" / "retriever.test.trec", ranked_run(ranks))
    write_run(folder / "runs" / "retriever.val.trec", DENSE_VAL)


ZEROSHOT_RANKS = [2, 3, 1, 4]


def make_workspace(tmp_path: Path) -> Workspace:
    cfg = load_config("toy", {"ablations.seeds": [1, 2], "ablations.variant_seeds": [1],
                              "ablations.list_sizes": [2, 4], "joint.list_size": 4})
    root = tmp_path / "runs"
    base = root / "baselines"
    write(base / "metrics.json", {"bm25": metrics(0.5), "zeroshot-mean": metrics(0.2), "zeroshot-cls": metrics(0.1)})
    write(base / "manifest.json", {"stage": "baselines", "wall_time_s": 1.5, "cpu_share": 0.75,
                                   "compute_dtype": "bfloat16"})
    write_run(base / "runs" / "bm25.val.trec", BM25_VAL)
    write_run(base / "runs" / "bm25.test.trec", ranked_run([5, 5, 5, 5]))
    write_run(base / "runs" / "zeroshot-mean.test.trec", ranked_run(ZEROSHOT_RANKS))
    for name, body in (("warmup_de", {"warmup_de": metrics(0.3)}),
                       ("warmup_ce", {"warmup_ce@bm25": metrics(0.55), "warmup_ce@warmup_de": metrics(0.35)}),
                       ("st_mnrl", {"st-mnrl": metrics(0.45)})):
        write(root / name / "metrics.json", body)
        write(root / name / "manifest.json", {"wall_time_s": 3.0, "steps": 2})
        write(root / name / "history.json", [{"step": 1, "loss": 2.0, "seconds": 0.2}, {"step": 2, "loss": 1.0, "seconds": 0.4}])
    augment = root / "augment"
    write(augment / "manifest.json", {"wall_time_s": 2.0})
    write(augment / "summary.json", {"lists": {"undenoised": 4, "denoised": 4}, "pseudo_positives": 0,
                                     "dropped_as_false_negative": 3, "fallback_lists": 0,
                                     "scoring": {"tokens_per_s": 100.0, "gflops_per_s": 2.0},
                                     "denoising_quality": {"pseudo": {"flagged": 0, "true": 0, "precision": float("nan"),
                                                                      "recall": 0.0}}})
    (augment / "denoising.json").write_text('{"pseudo": {"flagged": 0, "true": 0, "precision": NaN, "recall": 0.0}}')
    pd.DataFrame({"query_id": ["q1"] * 4, "doc_id": ["a", "b", "c", "d"], "ce_score": [2.0, 0.5, -1.0, -2.0],
                  "labelled": [True, False, False, False], "prob": [0.95, 0.5, 0.05, 0.02],
                  "fate": ["positive", "dropped", "negative", "negative"]}).to_parquet(augment / "candidates.parquet")
    for seed, ndcg in ((1, 0.5), (2, 0.7)):
        joint_folder(root, "dynamic", 4, seed, ndcg, DYNAMIC_RANKS[seed])
    for seed, ndcg in ((1, 0.4), (2, 0.44)):
        joint_folder(root, "static", 4, seed, ndcg, STATIC_RANKS[seed])
    joint_folder(root, "pointwise", 4, 1, 0.4, [1, 1, 1, 1])
    joint_folder(root, "no-denoise", 4, 1, 0.45, [1, 1, 1, 1])
    joint_folder(root, "dynamic", 2, 1, 0.3, [1, 1, 1, 1])
    val = Split("synthetic/val", {"v1": "query"}, {"v1": {"d1": 1}}, name="val")
    test = Split("synthetic/test", {f"t{i}": "query" for i in range(1, 5)}, {f"t{i}": {f"r{i}": 1} for i in range(1, 5)},
                 name="test")
    ws = Workspace(root, cfg, val, test)
    rerank_folders(ws)
    return ws


# What the rerank stage would write for the static and dynamic candidates: the re-ranked list of each
# seed puts the relevant document at these ranks (a re-ranker that lowers the retriever's score).
RERANKED_RANKS = [3, 3, 3, 3]


def rerank_folders(ws) -> None:
    from rqakit.stages import ablations, rerank

    done = [({"variant": v, "list_size": 4, "seed": s}, ws.folder(f"joint-{v}-m4-s{s}"))
            for v in ("dynamic", "static") for s in (1, 2)]
    for system, seed, retriever, reranker in ablations.rerank_plan(ws, done):
        h = rerank.stage_hash(ws, retriever=retriever, reranker=reranker)
        folder = ws.root / "rerank" / h
        write(folder / "metrics.json", metrics(g(3)))
        write(folder / "manifest.json", {"config_hash": h, "wall_time_s": 1.0})
        write_run(folder / "runs" / "reranked.test.trec", ranked_run(RERANKED_RANKS))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One report over the synthetic folders, shared by the read-only tests."""
    tmp_path = tmp_path_factory.mktemp("report")
    ws = make_workspace(tmp_path)
    out = tmp_path / "report"
    return ws, out, build_report(ws, out)


def read_rows(out: Path) -> pd.DataFrame:
    return pd.DataFrame(json.loads((out / "results.json").read_text()))


def test_results_rows_are_tidy_and_complete(built):
    _, out, _ = built
    rows = json.loads((out / "results.json").read_text())
    assert all(set(r) == {"table", "system", "seed", "metric", "value"} for r in rows)
    assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in rows)
    frame = pd.DataFrame(rows)
    assert set(frame["table"]) == {"retrieval", "rerank", "ablation", "listsize", "paired", "run"}
    retrieval = frame[frame["table"] == "retrieval"]
    assert set(retrieval["system"]) == {"bm25", "zeroshot-mean", "zeroshot-cls", "fusion-zeroshot", "warmup_de",
                                        "st-mnrl", "static", "dynamic", "hybrid", "hybrid-static"}
    assert set(retrieval["metric"]) == set(MEASURES)
    # a re-ranked top 20 holds 20 documents: its recall is named R@20, never R@100
    assert set(frame[frame["table"] == "rerank"]["metric"]) == {"nDCG@10", "RR@10", "R@20"}
    seeds = retrieval.groupby("system")["seed"].apply(lambda s: sorted(set(s.dropna().astype(int))))
    assert seeds["dynamic"] == seeds["static"] == seeds["hybrid"] == seeds["hybrid-static"] == [1, 2]
    assert retrieval[retrieval["system"] == "bm25"]["seed"].isna().all()
    assert set(frame[frame["table"] == "ablation"]["system"]) == {"dynamic", "static", "pointwise", "no-denoise"}
    assert set(frame[frame["table"] == "listsize"]["system"]) == {"retriever-m2", "retriever-m4", "reranker-m2", "reranker-m4"}
    assert set(frame[frame["table"] == "rerank"]["system"]) == {"warmup_ce@bm25", "warmup_ce@warmup_de",
                                                                "joint_ce@bm25", "joint_ce@dynamic",
                                                                "warmup_ce@static", "warmup_ce@dynamic",
                                                                "joint_ce@static"}
    assert not set(frame["metric"]) & {"wall_time_s", "mean_step_s", "overhead_s", "tokens_per_s"}   # science only
    timings = pd.DataFrame(json.loads((out / "timings.json").read_text()))
    step = timings[(timings["system"] == "warmup_de") & (timings["metric"] == "mean_step_s")]
    assert step["value"].tolist() == pytest.approx([0.3])          # mean of 0.2 and 0.4 s from history.json
    # The NaN precision of an empty pseudo-positive set is left out, not written as NaN.
    augment = frame[(frame["table"] == "run") & (frame["system"] == "augment")]
    assert "pseudo_precision" not in set(augment["metric"]) and "pseudo_recall" in set(augment["metric"])


def test_every_table_and_figure_is_written(built):
    _, out, summary = built
    for name in ("table2_retrieval", "table3_rerank", "table4_ablation", "list_size", "paired_test", "hybrid",
                 "denoising", "paper_table2", "paper_table3", "paper_table4", "paper_figure4"):
        assert (out / "tables" / f"{name}.csv").exists() and (out / "tables" / f"{name}.md").exists(), name
    for name in ("list_size", "mutual_improvement", "denoising", "warmup_loss"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (out / "report.md").read_text()
    first = report.splitlines()[2:]
    # Dynamic 0.5 / 0.7 against BM25 0.5: +0.1 over two seeds, not significant: no "beats".
    assert first[0].startswith("- On test nDCG@10, the dynamic retriever is level with BM25: 0.600 (mean of 2 seeds) "
                               "vs 0.500 (1 run)") and "one-sample t over seeds" in first[0]
    assert "query-level paired t p =" in first[0]
    assert "is level with the sentence-transformers MNRL peer" in first[1]
    assert "static distillation" in first[3] and "paired t over seeds" in first[3]
    assert "the joint re-ranker" in first[4] and "the warm re-ranker on BM25's candidates" in first[4]
    assert "beats" not in "\n".join(first[:5])                        # nothing here is significant
    assert any(line.startswith("- Re-ranking lowers the score: the warm re-ranker on the dynamic retriever's top 20")
               for line in first[5:12])
    assert "random tiny BERT" in report                                                  # toy backbone
    assert summary["stamp"]["config_hash"] in report


def test_wall_time_names_each_stage_and_the_cpu_share_it_had(built):
    _, out, _ = built
    report = (out / "report.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in report.splitlines()
            if line.startswith("| baselines |") or line.startswith("| joint-")}
    assert rows["baselines"][2:6] == ["1.5", "1", "0.75", "bfloat16"]   # wall time, attempts, CPU share, precision
    # joint folders are named by the kit's stage names; a share or dtype not recorded stays blank
    assert set(rows) >= {"joint-dynamic-m4-s1", "joint-dynamic-m4-s2", "joint-static-m4-s2", "joint-dynamic-m2-s1"}
    assert rows["joint-dynamic-m4-s2"][2] == "12.0" and rows["joint-dynamic-m4-s2"][4:6] == ["", ""]
    assert "| precision | " in report      # the stamp: the dtype this machine's stages compute in


def test_a_real_backbone_says_what_its_profile_does_not_reproduce():
    from rqakit.report.build import scope
    text = scope(load_config("scifact"))
    assert "`minilm`" in text and "m = 8" in text and "0.5 epochs" in text and "does not reproduce" in text


def test_mean_and_sd_over_seeds(built):
    _, out, _ = built
    table4 = pd.read_csv(out / "tables" / "table4_ablation.csv").set_index("variant")
    assert table4.at["dynamic", "nDCG@10"] == "0.600 ± 0.141"     # 0.5 and 0.7: sd (ddof 1) = 0.1414
    assert table4.at["static", "nDCG@10"] == "0.420 ± 0.028"      # 0.40 and 0.44
    assert table4.at["pointwise", "nDCG@10"] == "0.400"           # one seed: no sd
    assert table4.at["dynamic", "seeds"] == 2 and table4.at["pointwise", "seeds"] == 1
    table2 = pd.read_csv(out / "tables" / "table2_retrieval.csv").set_index("system")
    assert table2.at["bm25", "nDCG@10"] == "0.500"


def test_paired_test_over_seeds_with_the_query_level_test_beside_it(built):
    _, out, summary = built
    dynamic = np.array([(g(a) + g(b)) / 2 for a, b in zip(*DYNAMIC_RANKS.values())])   # (4,) test queries
    static = np.array([(g(a) + g(b)) / 2 for a, b in zip(*STATIC_RANKS.values())])
    test = summary["paired_test"]
    # run level: each run one number (metrics.json), paired by seed: dynamic 0.5 / 0.7, static 0.40 / 0.44
    assert test["test"] == "paired t over seeds"
    assert test["diff"] == pytest.approx(0.18)
    assert test["p"] == pytest.approx(stats.ttest_rel([0.5, 0.7], [0.40, 0.44]).pvalue)
    assert test["detectable"] > abs(test["diff"]) and test["ci"][0] < 0 < test["ci"][1]
    # query level: per-query values averaged over seeds
    assert test["query_p"] == pytest.approx(stats.ttest_rel(static, dynamic).pvalue)
    assert test["query_p_wilcoxon"] == pytest.approx(stats.wilcoxon(static, dynamic).pvalue)
    assert test["n_queries"] == 4
    paired = read_rows(out).query("table == 'paired'").set_index("metric")["value"]
    assert paired["p"] == pytest.approx(test["p"]) and paired["query_p"] == pytest.approx(test["query_p"])
    table = (out / "tables" / "paired_test.md").read_text()
    assert "detectable at 80 % power" in table and "p, run-level" in table


def test_hybrid_weight_is_chosen_on_validation_not_test(built):
    ws, out, summary = built
    # Validation: d1 first needs a BM25 weight of 0.7 under RRF (0.6 under min-max); RRF comes first in the grid.
    choice = choose_fusion(BM25_VAL, DENSE_VAL, ws.val.qrels)
    assert (choice["method"], choice["bm25_weight"], choice["val_value"]) == ("rrf", 0.7, 1.0)
    bm25_test = ranked_run([5, 5, 5, 5])
    hybrid = read_rows(out).query("table == 'retrieval' and system == 'hybrid' and metric == 'nDCG@10'").set_index("seed")
    for seed, ranks in DYNAMIC_RANKS.items():
        dense_test = ranked_run(ranks)
        expected = evaluate_run(fuse("rrf", bm25_test, dense_test, 0.7), ws.test.qrels, ["nDCG@10"])["nDCG@10"]
        assert hybrid.at[seed, "value"] == pytest.approx(expected)
        on_test = {(m, w): evaluate_run(fuse(m, bm25_test, dense_test, w), ws.test.qrels, ["nDCG@10"])["nDCG@10"]
                   for m in FUSION_METHODS for w in FUSION_WEIGHTS}
        assert max(on_test.values()) > expected                      # test would have picked another weight
    assert [c["bm25_weight"] for c in summary["hybrid"] if c["system"] == "hybrid"] == [0.7, 0.7]
    assert [c["system"] for c in summary["hybrid"]] == ["hybrid", "hybrid", "hybrid-static", "hybrid-static"]


def test_the_untrained_fusion_is_plain_rrf_of_bm25_and_the_zero_shot_backbone(built):
    ws, out, _ = built
    from rqakit.fusion import reciprocal_rank_fusion

    fused = reciprocal_rank_fusion([ranked_run([5, 5, 5, 5]), ranked_run(ZEROSHOT_RANKS)], k=60)
    expected = evaluate_run(fused, ws.test.qrels, ["nDCG@10"])["nDCG@10"]
    rows = read_rows(out).query("table == 'retrieval' and system == 'fusion-zeroshot' and metric == 'nDCG@10'")
    assert rows["value"].tolist() == [pytest.approx(expected)] and rows["seed"].isna().all()


def test_paper_numbers_stay_in_their_own_tables(built):
    _, out, _ = built
    paper2 = (out / "tables" / "paper_table2.md").read_text()
    assert "Paper Table 2" in paper2
    assert "| RocketQAv2 (retriever) | ERNIE-base | 38.8 | 86.2 | 98.1 | 75.1 | 83.7 | 89.0 |" in paper2
    assert "37.4" in (out / "tables" / "paper_table4.md").read_text()
    assert "not published" in (out / "tables" / "paper_figure4.md").read_text()
    ours = (out / "tables" / "table2_retrieval.md").read_text() + (out / "tables" / "table4_ablation.md").read_text()
    assert "ERNIE" not in ours and "38.8" not in ours and "Paper" not in ours
    values = set(read_rows(out)["value"].round(1))
    assert not {38.8, 86.2, 41.9, 37.4, 36.0} & values
    report = (out / "report.md").read_text()
    assert report.index("## The paper's own numbers") > report.index("## Ablations (Table 4 analogue)")


def test_a_missing_joint_run_is_named(tmp_path):
    import shutil

    ws = make_workspace(tmp_path)
    shutil.rmtree(ws.folder("joint-static-m4-s2"))
    with pytest.raises(RqaError, match="joint-static-m4-s2"):
        build_report(ws, tmp_path / "report")


def test_run_rows_are_replaced_not_duplicated(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text(json.dumps([{"table": "retrieval", "system": "bm25", "seed": None,
                                                    "metric": "nDCG@10", "value": 0.5}]))
    row = {"table": "run", "system": "reproduce", "seed": None, "metric": "wall_time_s", "value": 12.0}
    update_run_rows(out, [row])
    update_run_rows(out, [{**row, "value": 30.0}])
    rows = read_rows(out)
    assert rows.query("system == 'bm25'")["value"].tolist() == [0.5] and "reproduce" not in set(rows["system"])
    timings = pd.DataFrame(json.loads((out / "timings.json").read_text()))
    assert timings.query("system == 'reproduce'")["value"].tolist() == [30.0]

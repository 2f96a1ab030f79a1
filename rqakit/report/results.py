"""The kit's numbers as tidy rows, read from the stages' artifact folders.

Every number is one row {"table", "system", "seed", "metric", "value"}:

| table     | systems                                                                      | metrics            |
|-----------|------------------------------------------------------------------------------|--------------------|
| retrieval | bm25, zeroshot-mean, zeroshot-cls, fusion-zeroshot, warmup_de, st-mnrl, static, dynamic, hybrid, hybrid-static | ir_measures names |
| rerank    | warmup_ce@bm25, warmup_ce@warmup_de, joint_ce@bm25, joint_ce@dynamic         | ir_measures names  |
| ablation  | dynamic, static, pointwise, no-denoise (at m = ablations.list_size or joint's) | ir_measures names |
| listsize  | retriever-m<m>, reranker-m<m> (dynamic)                                      | ir_measures names  |
| paired    | dynamic-vs-static (per-query nDCG@10 on test, averaged over seeds)          | diff, p_ttest, ... |
| run       | stage folders, hybrid-<method>, augment, chapters, reproduce                 | wall_time_s, ...   |

`seed` is an integer for trained joint runs and None for seedless systems. Non-finite values
(a precision with nothing flagged) are left out.

`ws` is a `Workspace` (or any object with `root`, `cfg`, `folder(name)`, `val` and `test` splits).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RqaError
from ..evaluation import evaluate_run, evaluate_split, paired_test, per_query, per_query_split, relevance_mode
from ..fusion import interpolate, reciprocal_rank_fusion
from ..runs import read_trec_run

TABLES = ("retrieval", "rerank", "ablation", "listsize", "paired", "run")
VARIANTS = ("dynamic", "static", "pointwise", "no-denoise")
BASELINE_SYSTEMS = ("bm25", "zeroshot-mean", "zeroshot-cls")
SELECT_MEASURE = "nDCG@10"          # the measure the hybrid's fusion is chosen on (validation runs)
FUSION_METHODS = ("rrf", "minmax")  # reciprocal rank fusion (k = 60) | min-max score interpolation
FUSION_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))   # BM25's weight; 0 = dense only
STAGES = ("baselines", "st_mnrl", "warmup_de", "warmup_ce", "augment")


@dataclass(frozen=True)
class JointRun:
    variant: str
    list_size: int
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name


def row(table: str, system: str, seed: int | None, metric: str, value) -> dict:
    return {"table": table, "system": system, "seed": None if seed is None else int(seed),
            "metric": metric, "value": float(value)}


def metric_rows(table: str, system: str, seed: int | None, metrics: dict) -> list[dict]:
    """One row per finite metric value."""
    return [row(table, system, seed, k, v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def read_json(path: Path, what: str):
    path = Path(path)
    if not path.exists():
        raise RqaError(f"{what} is missing ({path}); run its chapter (or stage) first")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ joint runs
def planned_joint_runs(ws) -> list[JointRun]:
    """The Table 4 / Figure 4 runs of `ablations.planned_runs`, each with its folder; RqaError
    naming the first one that has no results."""
    from ..stages import ablations, joint

    runs = []
    for spec in ablations.planned_runs(ws):
        folder = ws.folder(joint.folder_name(spec["variant"], spec["list_size"], spec["seed"]))
        if not (folder / "metrics.json").exists():
            raise RqaError(f"joint run {folder.name} has no results under {folder.parent}; "
                           "run chapter 06_ablations (rqakit reproduce) first")
        runs.append(JointRun(spec["variant"], int(spec["list_size"]), int(spec["seed"]), folder))
    return runs


def main_runs(ws, runs: list[JointRun], variant: str) -> list[JointRun]:
    """The variant's runs at the profile's list size, over `ablations.seeds` (Table 2 and the test)."""
    seeds = set(ws.cfg.ablations.seeds)
    return [r for r in runs if r.variant == variant and r.list_size == ws.cfg.joint.list_size and r.seed in seeds]


def first_dynamic(ws, runs: list[JointRun]) -> JointRun:
    dynamic = main_runs(ws, runs, "dynamic")
    if not dynamic:
        raise RqaError("no dynamic joint run at joint.list_size; run chapter 05_joint first")
    return dynamic[0]


# ------------------------------------------------------------------------------ systems
def baseline_rows(ws) -> list[dict]:
    """bm25, zero-shot, warm retriever and (when present) the sentence-transformers peer."""
    metrics = read_json(ws.folder("baselines") / "metrics.json", "baselines/metrics.json")
    rows = [r for name in BASELINE_SYSTEMS if name in metrics for r in metric_rows("retrieval", name, None, metrics[name])]
    warm = read_json(ws.folder("warmup_de") / "metrics.json", "warmup_de/metrics.json")
    rows += metric_rows("retrieval", "warmup_de", None, warm["warmup_de"])
    peer = ws.folder("st_mnrl") / "metrics.json"
    if peer.exists():
        rows += metric_rows("retrieval", "st-mnrl", None, json.loads(peer.read_text())["st-mnrl"])
    return rows


def warm_rerank_rows(ws) -> list[dict]:
    metrics = read_json(ws.folder("warmup_ce") / "metrics.json", "warmup_ce/metrics.json")
    return [r for name in ("warmup_ce@bm25", "warmup_ce@warmup_de") if name in metrics
            for r in metric_rows("rerank", name, None, metrics[name])]


def joint_rows(ws, runs: list[JointRun]) -> list[dict]:
    """Table 2 (static, dynamic), Table 3 (joint CE on the dynamic retriever), Table 4, list size."""
    rows = []
    for variant in ("static", "dynamic"):
        for r in main_runs(ws, runs, variant):
            rows += metric_rows("retrieval", variant, r.seed, _metrics(r)["retriever"])
    for r in main_runs(ws, runs, "dynamic"):
        rows += metric_rows("rerank", "joint_ce@dynamic", r.seed, _metrics(r)["reranker"])
        rows += metric_rows("rerank", "joint_ce@bm25", r.seed, _metrics(r)["reranker@bm25"])
    from ..stages.ablations import ablation_list_size

    for r in runs:
        if r.list_size == ablation_list_size(ws.cfg):
            rows += metric_rows("ablation", r.variant, r.seed, _metrics(r)["retriever"])
        if r.variant == "dynamic":
            rows += metric_rows("listsize", f"retriever-m{r.list_size}", r.seed, _metrics(r)["retriever"])
            rows += metric_rows("listsize", f"reranker-m{r.list_size}", r.seed, _metrics(r)["reranker"])
    return rows


def _metrics(r: JointRun) -> dict:
    return json.loads((r.folder / "metrics.json").read_text())


def _run(folder: Path, name: str):
    return read_trec_run(Path(folder) / "runs" / f"{name}.trec")


# ------------------------------------------------------------------------------ hybrid
def fuse(method: str, bm25_run, dense_run, bm25_weight: float):
    """BM25 fused with a dense run: weighted RRF (k = 60) or min-max interpolation."""
    if method == "rrf":
        return reciprocal_rank_fusion([bm25_run, dense_run], weights=[bm25_weight, 1.0 - bm25_weight])
    if method == "minmax":
        return interpolate(bm25_run, dense_run, weight_a=bm25_weight)
    raise RqaError(f"unknown fusion method {method!r}; choose one of: {', '.join(FUSION_METHODS)}")


def choose_fusion(bm25_val, dense_val, val_qrels, measure: str = SELECT_MEASURE, score=None) -> dict:
    """The (method, BM25 weight) with the best `measure` on the validation runs; the first in grid
    order wins a tie. Test runs are never looked at here. `score(run, measures) -> {measure: value}`
    replaces scoring by `val_qrels` (answer scoring, `split_scorer`)."""
    score = score or (lambda run, measures: evaluate_run(run, val_qrels, measures))
    best = None
    for method in FUSION_METHODS:
        for weight in FUSION_WEIGHTS:
            value = score(fuse(method, bm25_val, dense_val, weight), [measure])[measure]
            if best is None or value > best["val_value"]:
                best = {"method": method, "bm25_weight": weight, "val_value": value, "measure": measure}
    return best


def split_scorer(ws, split, per_query_values: bool = False):
    """`score(run, measures)` on `split` as the stages score it: by its answers where it has them
    (NQ, `evaluate.relevance`), else by its qrels; means, or the per-query frame."""
    relevance = ws.cfg.evaluate.relevance
    texts, cache = None, {}
    if relevance_mode(split, relevance) == "answers":
        from ..evaluation import passage_texts

        texts = passage_texts(ws.corpus)
    scorer = per_query_split if per_query_values else evaluate_split
    return lambda run, measures: scorer(run, split, measures, texts, relevance, cache)


HYBRIDS = {"dynamic": "hybrid", "static": "hybrid-static"}   # joint variant -> its fused system


def hybrid_rows(ws, runs: list[JointRun]) -> tuple[list[dict], list[dict]]:
    """Retrieval rows of BM25 fused with the dynamic retriever ("hybrid") and with the static one
    ("hybrid-static") per seed, the fusion chosen on validation; the choices (one per run); and
    "fusion-zeroshot", BM25 and the zero-shot backbone under plain RRF (k = 60), nothing trained
    and nothing chosen."""
    base = ws.folder("baselines")
    bm25_val, bm25_test = _run(base, "bm25.val"), _run(base, "bm25.test")
    measures = list(ws.cfg.evaluate.measures)
    test_score = split_scorer(ws, ws.test)
    rows, choices = [], []
    for variant, system in HYBRIDS.items():
        for r in main_runs(ws, runs, variant):
            choice = choose_fusion(bm25_val, _run(r.folder, "retriever.val"), ws.val.qrels,
                                   score=split_scorer(ws, ws.val))
            fused = fuse(choice["method"], bm25_test, _run(r.folder, "retriever.test"), choice["bm25_weight"])
            test_metrics = test_score(fused, measures)
            rows += metric_rows("retrieval", system, r.seed, test_metrics)
            rows.append(row("run", f"{system}-{choice['method']}", r.seed, "bm25_weight", choice["bm25_weight"]))
            rows.append(row("run", f"{system}-{choice['method']}", r.seed, f"val_{choice['measure']}",
                            choice["val_value"]))
            choices.append({"system": system, "seed": r.seed, **choice, "test": test_metrics})
    zero_shot = base / "runs" / "zeroshot-mean.test.trec"
    if zero_shot.exists():
        fused = reciprocal_rank_fusion([bm25_test, read_trec_run(zero_shot)], k=60)
        rows += metric_rows("retrieval", "fusion-zeroshot", None, test_score(fused, measures))
    return rows, choices


# ------------------------------------------------------------------------------ paired test
def per_query_over_seeds(runs: list, qrels, measure: str = SELECT_MEASURE, score=None) -> pd.Series:
    """Per-query `measure` averaged over the runs of several seeds: Series indexed by query id.
    `score(run, measures) -> per-query frame` replaces scoring by `qrels` (`split_scorer`)."""
    score = score or (lambda run, measures: per_query(run, qrels, measures))
    frames = [score(run, [measure]).set_index("query_id")["value"] for run in runs]
    return pd.concat(frames, axis=1).mean(axis=1)


def dynamic_vs_static(ws, runs: list[JointRun], measure: str = SELECT_MEASURE) -> dict:
    """Paired t-test and Wilcoxon signed-rank test of dynamic vs static over the test queries.

    Per query, `measure` is averaged over the seeds of each variant; diff = dynamic - static.
    """
    dynamic, static = main_runs(ws, runs, "dynamic"), main_runs(ws, runs, "static")
    if not dynamic or not static:
        raise RqaError("the paired test needs dynamic and static runs at joint.list_size; run chapter 06_ablations")
    score = split_scorer(ws, ws.test, per_query_values=True)
    a = per_query_over_seeds([_run(r.folder, "retriever.test") for r in static], ws.test.qrels, measure, score)
    b = per_query_over_seeds([_run(r.folder, "retriever.test") for r in dynamic], ws.test.qrels, measure, score)
    test = paired_test(a, b)
    return {"measure": measure, "static": test["mean_a"], "dynamic": test["mean_b"], "diff": test["diff"],
            "p_ttest": test["p_ttest"], "p_wilcoxon": test["p_wilcoxon"], "n_queries": test["n"],
            "seeds_dynamic": len(dynamic), "seeds_static": len(static)}


def paired_rows(test: dict) -> list[dict]:
    keys = ("static", "dynamic", "diff", "p_ttest", "p_wilcoxon", "n_queries")
    return metric_rows("paired", "dynamic-vs-static", None, {k: test[k] for k in keys})


# ------------------------------------------------------------------------------ run figures
def mean_step_s(folder: Path) -> float | None:
    """Mean seconds per optimizer step of a training stage (manifest, else history.json)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("mean_step_s") is not None:
        return float(manifest["mean_step_s"])
    history = folder / "history.json"
    if history.exists():
        seconds = [h["seconds"] for h in json.loads(history.read_text()) if "seconds" in h]
        return float(np.mean(seconds)) if seconds else None
    return None


def stage_folders(ws, runs: list[JointRun]) -> list[tuple[str, int | None, Path]]:
    """(system, seed, folder) of every stage folder of this report that has a manifest."""
    out = [(name, None, ws.folder(name)) for name in STAGES if (ws.folder(name) / "manifest.json").exists()]
    out += [(f"joint-{r.variant}-m{r.list_size}", r.seed, r.folder) for r in runs if (r.folder / "manifest.json").exists()]
    return out


def stage_rows(ws, runs: list[JointRun]) -> list[dict]:
    """Wall time of every stage, steps and mean step time of the training stages, augment's figures."""
    rows = []
    for system, seed, folder in stage_folders(ws, runs):
        manifest = json.loads((folder / "manifest.json").read_text())
        figures = {"wall_time_s": manifest.get("wall_time_s"), "steps": manifest.get("steps"),
                   "mean_step_s": mean_step_s(folder) if manifest.get("steps") else None}
        rows += metric_rows("run", system, seed, {k: v for k, v in figures.items() if v is not None})
    rows += augment_rows(ws)
    return rows


def augment_rows(ws) -> list[dict]:
    path = ws.folder("augment") / "summary.json"
    if not path.exists():
        return []
    summary = json.loads(path.read_text())
    figures = {f"lists_{kind}": n for kind, n in summary.get("lists", {}).items()}
    for key in ("pseudo_positives", "dropped_as_false_negative", "fallback_lists"):
        if key in summary:
            figures[key] = summary[key]
    for key in ("tokens_per_s", "gflops_per_s"):
        if key in summary.get("scoring", {}):
            figures[key] = summary["scoring"][key]
    for name, counts in summary.get("calibration_settings", {}).items():
        figures.update({f"{key} [{name}]": v for key, v in counts.items() if key in ("pseudo_positives", "denoised_negatives")})
    for group, pr in summary.get("denoising_quality", {}).items():
        if isinstance(pr, dict):
            figures.update({f"{group}_{k}": v for k, v in pr.items() if v is not None})
    return metric_rows("run", "augment", None, figures)


def check_rows(rows: list[dict]) -> None:
    """Every row tidy: known table, the five keys, an int or None seed, a finite float value."""
    for r in rows:
        if set(r) != {"table", "system", "seed", "metric", "value"} or r["table"] not in TABLES:
            raise RqaError(f"malformed results row {r}")
        if not (r["seed"] is None or isinstance(r["seed"], int)) or not math.isfinite(r["value"]):
            raise RqaError(f"malformed results row {r}")

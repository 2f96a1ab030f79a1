"""The kit's numbers as tidy rows, read from the stages' artifact folders.

Every number is one row {"table", "system", "seed", "metric", "value"}:

| table     | systems                                                                      | metrics            |
|-----------|------------------------------------------------------------------------------|--------------------|
| retrieval | bm25, zeroshot-*, fusion-zeroshot(-tuned), warmup_de, st-mnrl, static, dynamic, hybrid(-static) | measures |
| rerank    | warmup_ce@(bm25, warmup_de, static, dynamic), joint_ce@(bm25, static, dynamic) | measures (R@N at depth N) |
| ablation  | dynamic, static, pointwise, no-denoise (at m = ablations.list_size or joint's) | ir_measures names |
| listsize  | retriever-m<m>, reranker-m<m> (dynamic)                                      | ir_measures names  |
| paired    | dynamic-vs-static (per-query nDCG@10 on test, averaged over seeds)          | diff, p_ttest, ... |
| run       | stage folders, hybrid-<method>, augment, chapters, reproduce                 | wall_time_s, ...   |

`seed` is an integer for trained joint runs and None for seedless systems. Non-finite values
(a precision with nothing flagged) are left out.

`ws` is a `Workspace` (or any object with `root`, `cfg`, `folder(name)`, `val` and `test` splits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RqaError
from ..evaluation import evaluate_run, paired_test, per_query
from ..fusion import interpolate, reciprocal_rank_fusion
from ..stage_folder import StageFolder
from ..stages import STAGES
from ..stages.common import split_scorer
from .systems import BASELINE_SYSTEMS, HYBRIDS

TABLES = ("retrieval", "rerank", "ablation", "listsize", "paired", "run")
SELECT_MEASURE = "nDCG@10"          # the default headline measure


def headline_measure(cfg) -> str:
    """The measure the report's claims, list-size study and fusion choice use: the profile's first
    (`evaluate.measures[0]`: nDCG@10 by default, RR@10 for MS MARCO, Success@5 for NQ)."""
    return cfg.evaluate.measures[0]
FUSION_METHODS = ("rrf", "minmax")  # reciprocal rank fusion (k = 60) | min-max score interpolation
FUSION_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))   # BM25's weight; 0 = dense only


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


# ------------------------------------------------------------------------------ joint runs
def planned_joint_runs(ws) -> list[JointRun]:
    """The Table 4 / Figure 4 runs of `ablations.planned_runs`, each with its folder; RqaError
    naming the first one that has no results."""
    from ..stages import ablations, joint

    runs = []
    for spec in ablations.planned_runs(ws):
        folder = ws.folder(joint.folder_name(spec["variant"], spec["list_size"], spec["seed"]))
        if not (StageFolder(folder) / "metrics.json").exists():
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
    metrics = StageFolder(ws.folder("baselines")).metrics
    rows = [r for name in BASELINE_SYSTEMS if name in metrics for r in metric_rows("retrieval", name, None, metrics[name])]
    rows += metric_rows("retrieval", "warmup_de", None, StageFolder(ws.folder("warmup_de")).metrics["warmup_de"])
    peer = StageFolder(ws.folder("st_mnrl")).json("metrics", required=False)
    if peer is not None:
        rows += metric_rows("retrieval", "st-mnrl", None, peer["st-mnrl"])
    return rows


def rerank_metrics(metrics: dict, depth: int) -> dict:
    """A re-ranked top-`depth` list holds `depth` documents, so a recall (or success) cut deeper is
    the one at `depth` and is named so: R@100 of a re-ranked top 30 is R@30."""
    out = {}
    for name, value in metrics.items():
        base, at, k = name.rpartition("@")
        if at and k.isdigit() and int(k) > depth and base.split("(")[0] in ("R", "Success"):
            name = f"{base}@{depth}"
        out.setdefault(name, value)
    return out


def warm_rerank_rows(ws) -> list[dict]:
    metrics = StageFolder(ws.folder("warmup_ce")).metrics
    depth = ws.cfg.evaluate.rerank_depth
    return [r for name in ("warmup_ce@bm25", "warmup_ce@warmup_de") if name in metrics
            for r in metric_rows("rerank", name, None, rerank_metrics(metrics[name], depth))]


def extra_rerank_rows(ws, runs: list[JointRun]) -> list[dict]:
    """Table 3 rows of the re-rankings no training stage evaluates (`ablations.rerank_plan`): the
    warm re-ranker on the static and dynamic retrievers' candidates, the joint one on the static's."""
    from ..stages import ablations, rerank

    done = [({"variant": r.variant, "list_size": r.list_size, "seed": r.seed}, r.folder) for r in runs]
    rows = []
    for system, seed, retriever, reranker in ablations.rerank_plan(ws, done):
        folder = rerank.run(ws, retriever=retriever, reranker=reranker, name=f"{system}-s{seed}", log=lambda *a: None)
        metrics = StageFolder(folder).metrics
        rows += metric_rows("rerank", system, seed, rerank_metrics(metrics, ws.cfg.evaluate.rerank_depth))
    return rows


def joint_rows(ws, runs: list[JointRun]) -> list[dict]:
    """Table 2 (static, dynamic), Table 3 (joint CE on the dynamic retriever), Table 4, list size."""
    rows = []
    for variant in ("static", "dynamic"):
        for r in main_runs(ws, runs, variant):
            rows += metric_rows("retrieval", variant, r.seed, _metrics(r)["retriever"])
    depth = ws.cfg.evaluate.rerank_depth
    for r in main_runs(ws, runs, "dynamic"):
        rows += metric_rows("rerank", "joint_ce@dynamic", r.seed, rerank_metrics(_metrics(r)["reranker"], depth))
        rows += metric_rows("rerank", "joint_ce@bm25", r.seed, rerank_metrics(_metrics(r)["reranker@bm25"], depth))
    from ..stages.ablations import ablation_list_size

    for r in runs:
        if r.list_size == ablation_list_size(ws.cfg):
            rows += metric_rows("ablation", r.variant, r.seed, _metrics(r)["retriever"])
        if r.variant == "dynamic":
            rows += metric_rows("listsize", f"retriever-m{r.list_size}", r.seed, _metrics(r)["retriever"])
            rows += metric_rows("listsize", f"reranker-m{r.list_size}", r.seed,
                                rerank_metrics(_metrics(r)["reranker"], depth))
    return rows


def _metrics(r: JointRun) -> dict:
    return StageFolder(r.folder).metrics


def _run(folder: Path, name: str):
    return StageFolder(folder).run(name)


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




def hybrid_rows(ws, runs: list[JointRun]) -> tuple[list[dict], list[dict], dict]:
    """Retrieval rows of BM25 fused with the dynamic retriever ("hybrid") and with the static one
    ("hybrid-static") per seed, and with the zero-shot backbone ("fusion-zeroshot-tuned"), each
    fusion chosen on validation; "fusion-zeroshot", the same pair under plain RRF (k = 60), nothing
    chosen. Returns the rows, the choices and the fused test runs ({system: {seed: run}})."""
    base = ws.folder("baselines")
    bm25_val, bm25_test = _run(base, "bm25.val"), _run(base, "bm25.test")
    measures = list(ws.cfg.evaluate.measures)
    test_score = split_scorer(ws, ws.test)
    rows, choices, fused_runs = [], [], {}
    pairs = [(system, r.seed, r.folder, "retriever") for variant, system in HYBRIDS.items()
             for r in main_runs(ws, runs, variant)]
    if StageFolder(base).has_run("zeroshot-mean.val"):
        pairs.append(("fusion-zeroshot-tuned", None, base, "zeroshot-mean"))
    for system, seed, folder, name in pairs:
        choice = choose_fusion(bm25_val, _run(folder, f"{name}.val"), ws.val.qrels, headline_measure(ws.cfg),
                               score=split_scorer(ws, ws.val))
        fused = fuse(choice["method"], bm25_test, _run(folder, f"{name}.test"), choice["bm25_weight"])
        test_metrics = test_score(fused, measures)
        fused_runs.setdefault(system, {})[seed] = fused
        rows += metric_rows("retrieval", system, seed, test_metrics)
        rows.append(row("run", f"{system}-{choice['method']}", seed, "bm25_weight", choice["bm25_weight"]))
        rows.append(row("run", f"{system}-{choice['method']}", seed, f"val_{choice['measure']}", choice["val_value"]))
        choices.append({"system": system, "seed": seed, **choice, "test": test_metrics})
    if StageFolder(base).has_run("zeroshot-mean.test"):
        fused = reciprocal_rank_fusion([bm25_test, _run(base, "zeroshot-mean.test")], k=60)
        fused_runs["fusion-zeroshot"] = {None: fused}
        rows += metric_rows("retrieval", "fusion-zeroshot", None, test_score(fused, measures))
    return rows, choices, fused_runs


def test_runs(ws, runs: list[JointRun], fused: dict) -> dict[str, dict]:
    """Every system's test run by seed (None for a system without seeds), for query-level tests:
    {system: {seed: run}}; systems whose run file is missing are left out."""
    from ..stages import ablations, rerank

    depth = ws.cfg.joint.list_size
    base, warm_de, warm_ce = (StageFolder(ws.folder(name)) for name in ("baselines", "warmup_de", "warmup_ce"))
    found = {"bm25": {None: (base, "bm25.test")}, "zeroshot-mean": {None: (base, "zeroshot-mean.test")},
             "warmup_de": {None: (warm_de, "warmup_de.test")},
             "st-mnrl": {None: (StageFolder(ws.folder("st_mnrl")), "st-mnrl.test")},
             "warmup_ce@bm25": {None: (warm_ce, "warmup_ce.bm25.test")},
             "warmup_ce@warmup_de": {None: (warm_ce, "warmup_ce.warmup_de.test")}}
    for variant in ("dynamic", "static"):
        found[variant] = {r.seed: (StageFolder(r.folder), "retriever.test") for r in main_runs(ws, runs, variant)}
    dynamic = main_runs(ws, runs, "dynamic")
    found["joint_ce@dynamic"] = {r.seed: (StageFolder(r.folder), "reranker.test") for r in dynamic}
    found["joint_ce@bm25"] = {r.seed: (StageFolder(r.folder), "reranker.bm25.test") for r in dynamic}
    done = [({"variant": r.variant, "list_size": r.list_size, "seed": r.seed}, r.folder) for r in runs
            if r.list_size == depth]
    for system, seed, retriever, reranker in ablations.rerank_plan(ws, done):
        folder = ws.root / "rerank" / rerank.stage_hash(ws, retriever=retriever, reranker=reranker)
        found.setdefault(system, {})[seed] = (StageFolder(folder), "reranked.test")
    out = {system: {seed: folder.run(name) for seed, (folder, name) in paths.items()}
           for system, paths in found.items() if paths and all(f.has_run(n) for f, n in paths.values())}
    return {**out, **fused}


# ------------------------------------------------------------------------------ paired test
def per_query_over_seeds(runs: list, qrels, measure: str = SELECT_MEASURE, score=None) -> pd.Series:
    """Per-query `measure` averaged over the runs of several seeds: Series indexed by query id.
    `score(run, measures) -> per-query frame` replaces scoring by `qrels` (`split_scorer`)."""
    score = score or (lambda run, measures: per_query(run, qrels, measures))
    frames = [score(run, [measure]).set_index("query_id")["value"] for run in runs]
    return pd.concat(frames, axis=1).mean(axis=1)


def seeds_of(frame: pd.DataFrame, table: str, system: str, measure: str) -> dict:
    """{seed: value} of one system's rows (seed None for a system without seeds)."""
    hit = frame[(frame["table"] == table) & (frame["system"] == system) & (frame["metric"] == measure)]
    return {(None if pd.isna(seed) else int(seed)): float(v) for seed, v in zip(hit["seed"], hit["value"])}


def compare(ws, frame: pd.DataFrame, systems_runs: dict, a: tuple[str, str], b: tuple[str, str],
            measure: str = SELECT_MEASURE) -> dict:
    """System B against system A, each given as (table, system): the run-level test over seeds
    (`rqakit.stats.compare_seeds`: paired by seed, one-sample against a system without seeds) and,
    where both systems' test runs are at hand, the query-level paired tests and bootstrap interval on
    per-query values averaged over each system's seeds."""
    from ..stats import bootstrap_queries, compare_seeds

    out = {"a": a[1], "b": b[1], "measure": measure,
           **compare_seeds(seeds_of(frame, *a, measure), seeds_of(frame, *b, measure))}
    if a[1] in systems_runs and b[1] in systems_runs:
        score = split_scorer(ws, ws.test, per_query_values=True)
        cache = systems_runs.setdefault("_per_query", {})   # a system scored once, however many claims name it
        for system in (a[1], b[1]):
            if (system, measure) not in cache:
                cache[system, measure] = per_query_over_seeds(list(systems_runs[system].values()), ws.test.qrels,
                                                              measure, score)
        qa, qb = cache[a[1], measure], cache[b[1], measure]
        q = paired_test(qa, qb.loc[qa.index])
        out.update({"query_p": q["p_ttest"], "query_p_wilcoxon": q["p_wilcoxon"], "n_queries": q["n"],
                    "query_ci": bootstrap_queries(qa.values, qb.loc[qa.index].values)})
    return out


def dynamic_vs_static(ws, runs: list[JointRun], frame: pd.DataFrame | None = None, systems_runs: dict | None = None,
                      measure: str = SELECT_MEASURE) -> dict:
    """Table 4's question: the dynamic against the static retriever on test, over `ablations.seeds`:
    the run-level test (paired by seed), its interval and the difference it detects at 80 % power,
    and the query-level tests beside it. `frame` and `systems_runs` default to the joint runs' own."""
    if not main_runs(ws, runs, "dynamic") or not main_runs(ws, runs, "static"):
        raise RqaError("the paired test needs dynamic and static runs at joint.list_size; run chapter 06_ablations")
    frame = pd.DataFrame(joint_rows(ws, runs)) if frame is None else frame
    systems_runs = test_runs(ws, runs, {}) if systems_runs is None else systems_runs
    return compare(ws, frame, systems_runs, ("retrieval", "static"), ("retrieval", "dynamic"), measure)


PAIRED_KEYS = ("mean_a", "mean_b", "diff", "p", "detectable", "query_p", "query_p_wilcoxon", "n_a", "n_b", "n_queries")


def paired_rows(test: dict) -> list[dict]:
    return metric_rows("paired", "dynamic-vs-static", None, {k: test[k] for k in PAIRED_KEYS if test.get(k) is not None})


# ------------------------------------------------------------------------------ run figures
def mean_step_s(folder: Path) -> float | None:
    """Mean seconds per optimizer step of a training stage (manifest, else history.json)."""
    folder = StageFolder(folder)
    manifest = folder.manifest or {}
    if manifest.get("mean_step_s") is not None:
        return float(manifest["mean_step_s"])
    if folder.history is not None:
        seconds = [h["seconds"] for h in folder.history if "seconds" in h]
        return float(np.mean(seconds)) if seconds else None
    return None


def stage_folders(ws, runs: list[JointRun]) -> list[tuple[str, int | None, Path]]:
    """(system, seed, folder) of every stage folder of this report that has a manifest."""
    out = [(name, None, ws.folder(name)) for name in STAGES if name != "joint" and StageFolder(ws.folder(name)).done]
    out += [(f"joint-{r.variant}-m{r.list_size}", r.seed, r.folder) for r in runs if StageFolder(r.folder).done]
    return out


def stage_rows(ws, runs: list[JointRun]) -> list[dict]:
    """Wall time of every stage, steps and mean step time of the training stages, augment's figures."""
    rows = []
    for system, seed, folder in stage_folders(ws, runs):
        manifest = StageFolder(folder).manifest
        figures = {"wall_time_s": manifest.get("wall_time_s"), "steps": manifest.get("steps"),
                   "mean_step_s": mean_step_s(folder) if manifest.get("steps") else None}
        rows += metric_rows("run", system, seed, {k: v for k, v in figures.items() if v is not None})
    rows += augment_rows(ws)
    return rows


def augment_rows(ws) -> list[dict]:
    summary = StageFolder(ws.folder("augment")).json("summary", required=False)
    if summary is None:
        return []
    figures = {f"lists_{kind}": n for kind, n in summary.get("lists", {}).items()}
    for key in ("pseudo_positives", "dropped_as_false_negative", "fallback_lists"):
        if key in summary:
            figures[key] = summary[key]
    for key in ("tokens_per_s",):
        if key in summary.get("scoring", {}):
            figures[key] = summary["scoring"][key]
    for group, pr in summary.get("denoising_quality", {}).items():
        if isinstance(pr, dict):
            figures.update({f"{group}_{k}": v for k, v in pr.items() if v is not None})
    return metric_rows("run", "augment", None, figures)


def threshold_reach(ws) -> dict | None:
    """Whether any scored unlabelled pair could become a pseudo-positive: the calibrated
    probability's maximum against `augment.pos_threshold`, and for a logistic calibration the CE
    logit where that threshold sits against the largest logit scored. None without the files."""
    folder = ws.folder("augment")
    if not (folder / "candidates.parquet").exists():
        return None
    candidates = pd.read_parquet(folder / "candidates.parquet")
    threshold = ws.cfg.augment.pos_threshold
    unlabelled = candidates[~candidates["labelled"]]
    out = {"pos_threshold": threshold, "max_prob": float(unlabelled["prob"].max()) if len(unlabelled) else math.nan,
           "max_logit": float(candidates["ce_score"].max()),
           "pseudo_positives": int((candidates["fate"] == "pseudo-positive").sum()), "logit_at_threshold": None}
    fit = StageFolder(folder).json("calibration", required=False) or {}
    if fit.get("a") is not None and fit.get("b") is not None and fit["a"] > 0:   # p = sigmoid(a * logit + b)
        out["logit_at_threshold"] = (math.log(threshold / (1 - threshold)) - fit["b"]) / fit["a"]
    elif fit.get("method") == "sigmoid":
        out["logit_at_threshold"] = math.log(threshold / (1 - threshold))
    out["reachable"] = bool(out["max_prob"] >= threshold)
    return out


def check_rows(rows: list[dict]) -> None:
    """Every row tidy: known table, the five keys, an int or None seed, a finite float value."""
    for r in rows:
        if set(r) != {"table", "system", "seed", "metric", "value"} or r["table"] not in TABLES:
            raise RqaError(f"malformed results row {r}")
        if not (r["seed"] is None or isinstance(r["seed"], int)) or not math.isfinite(r["value"]):
            raise RqaError(f"malformed results row {r}")

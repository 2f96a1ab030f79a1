"""Stage `warmup_ce` (RocketQA step 2): the cross-encoder trained on lists of a positive (index 0)
and negatives drawn from the warm dual encoder's top-n (and BM25's, `warmup_ce.negatives_from`).

`warmup_ce.loss`: listwise (the kit's default: softmax cross-entropy over each list) or pointwise
(RocketQA v1's step 2: each pair classified on its own); `warmup_ce.schedule` and `warmup_ratio`:
linear decay after a 10 % warm-up (default) or RocketQA v1's constant rate without warm-up.

Negatives are drawn afresh every epoch. Writes `model/` (the warm re-ranker, the teacher of every
later stage), `history.json`, and `metrics.json`: the re-ranked top-N of the warm retriever and of
BM25 on the test queries.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifacts import work_dir
from ..models import CrossEncoder
from ..objectives import ListExample, ListwiseReranker, PointwiseReranker
from ..rerank import ScoreCache, rerank
from ..runtime import first_rank, per_process
from ..training import OptimSettings
from . import teacher
from .common import (
    answer_bearing,
    bm25_ranking,
    fit,
    load_run,
    make_plan,
    metrics_of,
    save_run,
    shared_ranking,
    warm_retriever_ranking,
    write_json,
)
from .workspace import SPLITS, Workspace

NEEDS = ("baselines", "warmup_de")
READS = (*SPLITS, "data.answer_free_negatives", "model.backbone", "model.ce_pooling", "model.ce_max_len",
         "model.ce_query_max_len", "warmup_ce", "evaluate.rerank_depth", "evaluate.measures", "evaluate.relevance")


def negative_pools(ws: Workspace, rankings: list[dict[str, list[str]]], depth: int) -> dict[str, list[str]]:
    """Per training query: the union of the rankings' top `depth` (qid -> doc ids, rank order),
    labelled positives removed (and, on a split with answers, passages that contain one:
    `data.answer_free_negatives`)."""
    pools = {}
    for qid in sorted(ws.train.queries):
        labelled = set(ws.train.positives(qid))
        seen = dict.fromkeys(d for r in rankings for d in r.get(qid, [])[:depth] if d not in labelled)
        pools[qid] = list(seen)
    bearing = answer_bearing(ws, pools)
    if bearing:
        pools = {qid: [d for d in pool if d not in bearing[qid]] for qid, pool in pools.items()}
    return pools


def listwise_examples(ws: Workspace, pools: dict[str, list[str]], *, m: int, epochs: int, seed: int,
                      first: int = 0) -> list[list[ListExample]]:
    """One list per query and epoch (`first` to `epochs` - 1): a labelled positive + m-1 negatives
    sampled from its pool, drawn from (seed, epoch, query index)."""
    per_epoch = []
    for epoch in range(first, epochs):
        lists = []
        for i, qid in enumerate(sorted(pools)):
            positives, pool = ws.train.positives(qid), pools[qid]
            if not positives or len(pool) < m - 1:
                continue
            rng = np.random.default_rng([seed, epoch, i])
            pos = positives[int(rng.integers(len(positives)))]
            negs = [pool[j] for j in rng.choice(len(pool), size=m - 1, replace=False)]
            lists.append(ListExample(ws.train.queries[qid], ws.corpus.get_many([pos, *negs])))
        per_epoch.append(lists)
    return per_epoch


def build_cross_encoder(ws: Workspace, seed: int) -> CrossEncoder:
    """The backbone with a fresh score head drawn from `seed`, whatever the caller's RNG state."""
    m = ws.cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CrossEncoder.from_backbone(m.backbone, pooling=m.ce_pooling, max_length=m.ce_max_len,
                                          query_max_length=m.ce_query_max_len)


def until_it_leads(ws: Workspace, objective, pools: dict[str, list[str]], done_epochs: int, optim: OptimSettings,
                   folder: Path, log=print) -> dict:
    """`warmup_ce.lead_epochs`: while the re-ranker does not lead on validation (`teacher.measure_lead`),
    one more epoch of warm-up on freshly drawn lists, with a schedule of its own over that epoch, at
    most `lead_epochs` of them. Returns {"checks": every check in order, "results": the extra epochs'
    TrainResults}."""
    c, checks, results = ws.cfg.warmup_ce, [], []
    for k in range(c.lead_epochs + 1):
        checks.append(teacher.measure_lead(ws, objective.ce))
        log(f"[warmup_ce] after {done_epochs + k} epochs: {teacher.verdict_line(checks[-1])}")
        if checks[-1]["leads"] or k == c.lead_epochs:
            break
        epoch = done_epochs + k
        lists = listwise_examples(ws, pools, m=c.list_size, epochs=epoch + 1, seed=c.seed, first=epoch)[0]
        plan = make_plan(len(lists), batch_size=c.batch_queries, micro_batch_size=per_process(c.batch_queries),
                         epochs=1.0, seed=c.seed + epoch)
        results.append(fit(objective, lists, plan, ws=ws, section=c, folder=folder, desc=f"warmup_ce +{k + 1}",
                           log=log, optim=optim, checkpoints=f"ckpt-lead-{k + 1}"))
    return {"checks": checks, "results": results}


def run(ws: Workspace, force: bool = False, log=print) -> Path:
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes

    cfg, c = ws.cfg, ws.cfg.warmup_ce
    base, wde = ws.upstream("warmup_ce", log).values()
    folder = ws.folder("warmup_ce")

    def build(tmp: Path) -> dict:
        rankings, shared = [], work_dir(folder)
        if c.negatives_from in ("bm25", "bm25+de"):
            rankings.append(shared_ranking(shared / "bm25-train.parquet",
                                           lambda: bm25_ranking(base, ws.train.queries, c.depth)))
        if c.negatives_from in ("de", "bm25+de"):
            rankings.append(shared_ranking(shared / "de-train.parquet", lambda: warm_retriever_ranking(
                wde, ws.train.queries, c.depth, cfg.evaluate.batch_size)))
        pools = negative_pools(ws, rankings, c.depth)
        n_epochs = max(1, int(np.ceil(c.epochs)))
        per_epoch = listwise_examples(ws, pools, m=c.list_size, epochs=n_epochs, seed=c.seed)
        examples, plan = [], []  # negatives are drawn afresh each epoch: one list set per epoch
        for e, lists in enumerate(per_epoch):
            offset = len(examples)
            examples += lists
            plan += [[[offset + i for i in micro] for micro in step]
                     for step in make_plan(len(lists), batch_size=c.batch_queries,
                                           micro_batch_size=per_process(c.batch_queries),
                                           epochs=min(1.0, c.epochs - e), seed=c.seed + e)]
        ce = build_cross_encoder(ws, c.seed)
        objective = (PointwiseReranker if c.loss == "pointwise" else ListwiseReranker)(ce)
        optim = OptimSettings(lr=c.lr, weight_decay=c.weight_decay, warmup_ratio=c.warmup_ratio, schedule=c.schedule,
                              clip=1.0)
        result = fit(objective, examples, plan, ws=ws, section=c, folder=folder, desc="warmup_ce", log=log, optim=optim)
        lead = until_it_leads(ws, objective, pools, n_epochs, optim, folder, log) if c.lead_epochs else None
        extra_runs = lead["results"] if lead else []
        if not first_rank():   # rank 0 alone evaluates and publishes (artifacts.run_stage)
            return {}
        ce.save_pretrained(tmp / "model")
        metrics, shared = {}, ScoreCache()  # the two runs share many (query, doc) pairs: score each once
        for name, source in (("warmup_de", load_run(wde, "warmup_de.test")), ("bm25", load_run(base, "bm25.test"))):
            reranked = rerank(ce, source, ws.test.queries, ws.corpus, top_n=cfg.evaluate.rerank_depth,
                              batch_size=cfg.evaluate.batch_size, cache=shared)
            save_run(tmp, f"warmup_ce.{name}.test", reranked)
            metrics[f"warmup_ce@{name}"] = metrics_of(reranked, ws.test, cfg.evaluate.measures, ws.corpus,
                                                        cfg.evaluate.relevance)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", result.history + [h for r in extra_runs for h in r.history])
        log(f"[warmup_ce] {result.steps} steps, test {metrics}")
        extra = {"lead_checks": lead["checks"], "lead_epochs_used": len(lead["results"])} if lead else {}
        return {"metrics": metrics, "steps": result.steps + sum(r.steps for r in extra_runs),
                "train_wall_time_s": result.wall_time_s, "steps_s": round(result.steps_seconds, 3), **extra}

    return ws.build(folder, ws.hash("warmup_ce"), build, force=force, log=log)

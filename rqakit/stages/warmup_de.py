"""Stage `warmup_de` (RocketQA step 1): the dual encoder trained with in-batch negatives plus one
BM25 hard negative per (query, positive) pair, the DPR recipe. Under torchrun the passages of every
process join the negatives (cross-batch negatives, `rqakit.runtime.gather_with_grad`).

Writes `model/` (the warm retriever), `corpus_emb/` (its passage embeddings, which `warmup_ce` and
`augment` search for the training queries at their own depth), its val/test runs, `history.json`
and `metrics.json` (test).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import work_dir
from ..models import DualEncoder
from ..objectives import InBatchRetriever, ListExample
from ..runtime import first_rank, per_process
from ..search import dense_retrieve
from ..training import OptimSettings
from .common import answer_bearing, bm25_ranking, fit, make_plan, metrics_of, save_run, shared_ranking, write_json
from .workspace import SPLITS, Workspace

NEEDS = ("baselines",)
READS = (*SPLITS, "data.answer_free_negatives", "model.backbone", "model.shared_towers", "model.pooling", "model.normalize",
         "model.temperature", "model.q_max_len", "model.p_max_len", "warmup_de", "evaluate.retrieve_depth", "evaluate.measures",
         "evaluate.relevance")


def training_pairs(ws: Workspace, bm25_ranking: dict[str, list[str]], *, depth: int, seed: int) -> list[ListExample]:
    """(query, [positive, BM25 negative]) for every labelled (query, positive) pair.

    The negative is drawn uniformly from BM25's top `depth`, never a labelled positive, nor (NQ,
    DPR's BM25 negatives) a passage that contains an answer.
    """
    examples = []
    top = {q: bm25_ranking.get(q, [])[:depth] for q in sorted(ws.train.queries)}
    bearing = answer_bearing(ws, top) or {}
    for qid in sorted(ws.train.queries):
        positives = ws.train.positives(qid)
        excluded = set(positives) | bearing.get(qid, set())
        pool = [d for d in top[qid] if d not in excluded]
        if not positives or not pool:
            continue
        rng = np.random.default_rng([seed, len(examples)])
        for pos in positives:
            neg = pool[int(rng.integers(len(pool)))]
            examples.append(ListExample(ws.train.queries[qid], ws.corpus.get_many([pos, neg])))
    return examples


def bm25_training_pairs(ws: Workspace, baselines_folder: Path, share: Path | None = None) -> list[ListExample]:
    """The pairs of RocketQA step 1 under this config (`warmup_de.bm25_depth`, `warmup_de.seed`);
    the sentence-transformers peer trains on the same ones. `share`: the calling stage's work
    folder, where torchrun processes share BM25's ranking (`common.shared_ranking`)."""
    c = ws.cfg.warmup_de
    bm25 = shared_ranking(Path(share or work_dir(ws.folder("warmup_de"))) / "bm25-train.parquet",
                          lambda: bm25_ranking(baselines_folder, ws.train.queries, c.bm25_depth))
    return training_pairs(ws, bm25, depth=c.bm25_depth, seed=c.seed)


def build_dual_encoder(ws: Workspace) -> DualEncoder:
    m = ws.cfg.model
    return DualEncoder.from_backbone(m.backbone, shared=m.shared_towers, pooling=m.pooling,
                                     normalize=m.normalize, temperature=m.temperature,
                                     query_max_length=m.q_max_len, passage_max_length=m.p_max_len)


def run(ws: Workspace, force: bool = False, log=print) -> Path:
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes

    cfg, c = ws.cfg, ws.cfg.warmup_de
    base = ws.upstream("warmup_de", log)["baselines"]
    folder = ws.folder("warmup_de")

    def build(tmp: Path) -> dict:
        examples = bm25_training_pairs(ws, base, work_dir(folder))
        de = build_dual_encoder(ws)
        objective = InBatchRetriever(de)
        plan = make_plan(len(examples), batch_size=c.batch_queries, micro_batch_size=per_process(c.batch_queries),
                         epochs=c.epochs, seed=c.seed)
        result = fit(objective, examples, plan, ws=ws, section=c, folder=folder, desc="warmup_de", log=log,
                     optim=OptimSettings(lr=c.lr, weight_decay=c.weight_decay, warmup_ratio=c.warmup_ratio,
                                         schedule="linear", clip=1.0))
        if not first_rank():   # rank 0 alone evaluates and publishes (artifacts.run_stage)
            return {}
        de.save_pretrained(tmp / "model")
        # The corpus embeddings stay: later stages search them for the training queries at their depth.
        runs = dense_retrieve(de, ws.corpus, {"val": ws.val.queries, "test": ws.test.queries},
                              cfg.evaluate.retrieve_depth, emb_dir=tmp / "corpus_emb", batch_size=cfg.evaluate.batch_size)
        for name, r in runs.items():
            save_run(tmp, f"warmup_de.{name}", r)
        metrics = {"warmup_de": metrics_of(runs["test"], ws.test, cfg.evaluate.measures, ws.corpus,
                                           cfg.evaluate.relevance)}
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", result.history)
        log(f"[warmup_de] {len(examples)} pairs, {result.steps} steps, test {metrics['warmup_de']}")
        return {"metrics": metrics, "train_examples": len(examples), "steps": result.steps,
                "train_wall_time_s": result.wall_time_s, "steps_s": round(result.steps_seconds, 3)}

    return ws.build(folder, ws.hash("warmup_de"), build, force=force, log=log)

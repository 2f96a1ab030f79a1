"""Stage `baselines`: BM25 (bm25s) and the backbone read zero-shot (mean and [CLS] pooling).

Writes the BM25 index (later stages search it for their training queries at their own depth),
BM25 runs for the validation and test queries, zero-shot runs, and `metrics.json` (test).
"""
from __future__ import annotations

from pathlib import Path

from ..search import BM25Index, zero_shot_runs
from .common import metrics_of, save_run, write_json
from .workspace import SPLITS, Workspace

NEEDS: tuple[str, ...] = ()
READS = (*SPLITS, "model.backbone", "model.p_max_len", "model.q_max_len", "evaluate.retrieve_depth",
         "evaluate.measures", "evaluate.relevance")


def run(ws: Workspace, force: bool = False, log=print) -> Path:
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes
    cfg = ws.cfg

    def build(tmp: Path) -> dict:
        measures, depth = cfg.evaluate.measures, cfg.evaluate.retrieve_depth
        bm25 = BM25Index.build(ws.corpus)
        bm25.save(tmp / "bm25_index")
        save_run(tmp, "bm25.val", bm25.search(ws.val.queries, depth))
        test_run = bm25.search(ws.test.queries, depth)
        save_run(tmp, "bm25.test", test_run)
        metrics = {"bm25": metrics_of(test_run, ws.test, measures, ws.corpus, cfg.evaluate.relevance)}
        # One encoding serves both readings: mean pooling normalised, as MiniLM was trained; raw [CLS].
        readings = zero_shot_runs(cfg.model.backbone, ws.corpus, {"val": ws.val.queries, "test": ws.test.queries},
                                  depth, {"mean": True, "cls": False}, max_length=cfg.model.p_max_len,
                                  query_max_length=cfg.model.q_max_len, batch_size=cfg.evaluate.batch_size)
        for pooling, runs in readings.items():
            name = f"zeroshot-{pooling}"
            for split_name, run_ in runs.items():
                save_run(tmp, f"{name}.{split_name}", run_)
            metrics[name] = metrics_of(runs["test"], ws.test, measures, ws.corpus, cfg.evaluate.relevance)
            log(f"[baselines] {name}: {metrics[name]}")
        log(f"[baselines] bm25: {metrics['bm25']}")
        write_json(tmp / "metrics.json", metrics)
        return {"metrics": metrics}

    return ws.build(ws.folder("baselines"), ws.hash("baselines"), build, force=force, every_rank=False, log=log)

"""Stage `rerank`: a trained re-ranker over the test top candidates of a retriever another stage
saved, for the report's Table 3 rows that no training stage evaluates (the static retrievers'
candidates under the warm and the joint re-rankers).

    folder = run(ws, retriever=ws.folder("joint-static-m8-s1"), reranker=ws.folder("warmup_ce"),
                 name="warmup_ce@static-s1")
    load_run(folder, "reranked.test")

One folder per (retriever folder, re-ranker folder, `evaluate.rerank_depth`, compute dtype): the
inputs are finished stage folders, so their names pin what they hold; nothing is trained and no
random number is drawn.
"""
from __future__ import annotations

from pathlib import Path

from ..config import config_hash
from ..errors import RqaError
from ..models import CrossEncoder
from ..rerank import ScoreCache, rerank
from .common import load_run, metrics_of, save_run, write_json
from .workspace import Workspace

NEEDS = ()
READS = ("evaluate.rerank_depth", "evaluate.measures", "evaluate.relevance", "data.eval", "data.train",
         "data.use_titles")
RERANKER_MODELS = {"warmup_ce": "model", "joint": "reranker"}   # where a stage keeps its re-ranker
SCORES = ".scores.parquet"   # the scores every pass shares, beside the folders (a dot: no result folder)


def reranker_model(folder: Path) -> Path:
    stage = Path(folder).parent.name.split("-")[0]
    if stage not in RERANKER_MODELS or not (Path(folder) / RERANKER_MODELS[stage]).is_dir():
        raise RqaError(f"{folder} holds no re-ranker (a warmup_ce folder or a dynamic joint run's)")
    return Path(folder) / RERANKER_MODELS[stage]


def stage_hash(ws: Workspace, name: str = "rerank", retriever: Path | None = None, reranker: Path | None = None) -> str:
    """The inputs' folder names, the depth, the measures and the dtype; without inputs (`rqakit
    runs` asking for the current folder) there is no single one."""
    if retriever is None or reranker is None:
        raise RqaError("a rerank folder has no single current config: it belongs to the report that made it")
    e = ws.cfg.evaluate
    return config_hash({"retriever": f"{Path(retriever).parent.name}/{Path(retriever).name}",
                        "reranker": f"{Path(reranker).parent.name}/{Path(reranker).name}",
                        "depth": e.rerank_depth, "measures": list(e.measures), "relevance": e.relevance,
                        "data": [ws.cfg.data.train, ws.cfg.data.eval, ws.cfg.data.use_titles],
                        "compute_dtype": ws.compute_dtype})


def run(ws: Workspace, *, retriever: Path, reranker: Path, name: str, run_name: str = "retriever.test",
        force: bool = False, log=print) -> Path:
    """Re-rank the top `evaluate.rerank_depth` of `retriever`'s saved test run with `reranker`."""
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes
    cfg = ws.cfg
    cfg_hash = stage_hash(ws, retriever=retriever, reranker=reranker)
    folder = ws.root / "rerank" / cfg_hash

    def build(tmp: Path) -> dict:
        ce = CrossEncoder.from_pretrained(reranker_model(reranker))
        # one score per (re-ranker fingerprint, query, passage) across every pass: the warm re-ranker
        # meets the same candidates in many retrievers' top N
        cache = ScoreCache(ws.root / "rerank" / SCORES)
        reranked = rerank(ce, load_run(retriever, run_name), ws.test.queries, ws.corpus,
                          top_n=cfg.evaluate.rerank_depth, batch_size=cfg.evaluate.batch_size, cache=cache)
        cache.save()
        save_run(tmp, "reranked.test", reranked)
        metrics = metrics_of(reranked, ws.test, cfg.evaluate.measures, ws.corpus, cfg.evaluate.relevance)
        write_json(tmp / "metrics.json", metrics)
        log(f"[rerank {name}] {metrics}")
        return {"name": name, "retriever": str(retriever), "reranker": str(reranker), "metrics": metrics}

    return ws.build(folder, cfg_hash, build, force=force, every_rank=False, log=log)

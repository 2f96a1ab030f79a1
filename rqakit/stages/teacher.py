"""Does the warm re-ranker lead its students? Checked on validation before its scores are used.

RocketQAv2 denoises the mined lists with the warm re-ranker, distils the retriever towards its
scores (static targets, the start of joint training) and trusts it over the retriever: the method
assumes a teacher that ranks better than the models it teaches. On a new collection that has to
be measured. `check` re-ranks the validation top `evaluate.rerank_depth` of BM25 and of the warm
retriever with the warm re-ranker and compares the first measure of `evaluate.measures` with each
retriever's own on the same candidates: the teacher leads where it beats both.

    result = check(ws, log=log)   # {"leads": bool, "measure", "rows": [{candidates, retriever, teacher}], "line"}

The result is kept in `<root>/teacher/<hash>/teacher.json`, one folder per (the folders it reads,
depth, measure, dtype); scores are shared with the rerank stage's cache. `read` gives it back
without computing (the report).
"""
from __future__ import annotations

from pathlib import Path

from ..config import config_hash
from ..models import CrossEncoder
from ..rerank import ScoreCache, rerank
from ..stage_folder import StageFolder
from .common import load_run, split_scorer, write_json
from .rerank import SCORES
from .workspace import Workspace

RETRIEVERS = (("bm25", "baselines", "bm25.val"), ("warmup_de", "warmup_de", "warmup_de.val"))
NEEDS = ("baselines", "warmup_de", "warmup_ce")
READS = ("evaluate.rerank_depth", "evaluate.measures", "evaluate.relevance")


def stage_hash(ws: Workspace, name: str = "teacher") -> str:
    """The folders it reads (their names pin what they hold), the depth, the measure, the dtype."""
    e = ws.cfg.evaluate
    inputs = {stage: ws.folder(stage).name for stage in NEEDS}
    return config_hash({"inputs": inputs, "depth": e.rerank_depth, "measure": e.measures[0], "relevance": e.relevance,
                        "compute_dtype": ws.compute_dtype})


def read(ws: Workspace) -> dict | None:
    """The check as a finished run kept it, with its line; None where it has not run."""
    result = StageFolder(ws.folder("teacher")).json("teacher", required=False)
    return None if result is None else {**result, "line": verdict_line(result)}


def measure_lead(ws: Workspace, ce: CrossEncoder, cache: ScoreCache | None = None) -> dict:
    """The re-ranker `ce` against BM25 and the warm retriever on their validation top
    `evaluate.rerank_depth` (the saved runs of `baselines` and `warmup_de`)."""
    e = ws.cfg.evaluate
    measure, score, rows = e.measures[0], split_scorer(ws, ws.val), []
    for name, stage, run_name in RETRIEVERS:
        run = load_run(ws.folder(stage), run_name)
        reranked = rerank(ce, run, ws.val.queries, ws.corpus, top_n=e.rerank_depth, batch_size=e.batch_size,
                          cache=cache, progress=False)
        rows.append({"candidates": f"{name} top {e.rerank_depth}", "retriever": score(run, [measure])[measure],
                     "teacher": score(reranked, [measure])[measure]})
    return {"measure": measure, "split": "validation", "queries": len(ws.val.queries), "rows": rows,
            "leads": all(r["teacher"] > r["retriever"] for r in rows)}


def check(ws: Workspace, force: bool = False, log=print) -> dict:
    """The warm re-ranker against BM25 and the warm retriever on their validation candidates (the
    stages it reads must be built)."""
    ws.apply()
    folder = ws.folder("teacher")

    def build(tmp: Path) -> dict:
        cache = ScoreCache(ws.root / "rerank" / SCORES)
        result = measure_lead(ws, CrossEncoder.from_pretrained(ws.folder("warmup_ce") / "model"), cache)
        cache.save()
        write_json(tmp / "teacher.json", result)
        return {}

    ws.build(folder, folder.name, build, force=force, every_rank=False, log=lambda *a: None)
    result = read(ws)
    if not result["leads"]:
        log(f"rqakit: warning: {result['line']}")
    return result


def verdict_line(result: dict) -> str:
    """One line with the numbers: whether the warm re-ranker leads, and what to do where it does not."""
    pairs = "; ".join(f"{r['teacher']:.3f} on {r['candidates']} against the retriever's {r['retriever']:.3f}"
                      for r in result["rows"])
    if result["leads"]:
        return f"the warm re-ranker leads on {result['split']} ({result['queries']} queries, {result['measure']}: {pairs})"
    return (f"the warm re-ranker does not lead on {result['split']} ({result['queries']} queries, {result['measure']}: "
            f"{pairs}): denoising and distilling from it can make the retriever worse; --set "
            "warmup_ce.lead_epochs=N trains it up to N more epochs until it leads, and read the joint results with "
            "that in mind")

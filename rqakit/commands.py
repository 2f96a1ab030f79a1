"""What the command line's commands do; `rqakit.cli` only parses arguments and calls these.

    evaluate(dataset="beir/scifact/test", retriever="bm25")   # `rqakit evaluate`: metrics as a dict
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import RqaError


def evaluate(*, dataset: str, retriever: str, pooling: str | None = None, max_length: int | None = None,
             query_max_length: int | None = None, rerank: str | None = None, top: int = 30,
             run_out: str | None = None, depth: int = 100, use_titles: bool = True,
             measures: list[str] | None = None, batch_size: int = 64) -> dict:
    """`rqakit evaluate`: one JSON object of ir_measures metrics (+ re-ranked metrics) and timings;
    a split with answers (NQ) is scored by them (DPR has_answer), as the stages do."""
    from .data import load_corpus, load_split
    from .evaluation import DEFAULT_MEASURES, evaluate_split, passage_texts
    from .runs import write_trec_run
    from .search import BM25Index, dense_retrieve, load_dual_encoder

    measures = list(measures or DEFAULT_MEASURES)
    split = load_split(dataset, require_qrels=True)
    corpus = load_corpus(dataset, use_titles=use_titles)

    def scores(run) -> dict:  # by answers where the split has them (DPR has_answer), else by qrels
        return evaluate_split(run, split, measures, passage_texts(corpus))
    start = time.time()
    if retriever == "bm25":
        run = BM25Index.build(corpus).search(split.queries, depth)
    else:
        de = load_dual_encoder(retriever, pooling=pooling, max_length=max_length,
                               query_max_length=query_max_length)
        run = dense_retrieve(de, corpus, {"eval": split.queries}, depth, batch_size=batch_size)["eval"]
    result = {"dataset": dataset, "retriever": retriever, "queries": len(split.queries),
              **scores(run), "retrieve_s": round(time.time() - start, 2)}
    if rerank:
        from .models import CrossEncoder
        from .rerank import rerank as rerank_run

        if not Path(rerank, "rqakit.json").exists():
            raise RqaError(f"--rerank {rerank} is not a cross-encoder folder written by the kit (no rqakit.json)")
        t0 = time.time()
        ce = CrossEncoder.from_pretrained(rerank)
        run = rerank_run(ce, run, split.queries, corpus, top_n=top, batch_size=batch_size)
        result["rerank"] = {"top": top, **scores(run), "rerank_s": round(time.time() - t0, 2)}
    if run_out:
        write_trec_run(run, run_out)
    return result

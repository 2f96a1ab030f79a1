"""Retrieve and re-rank a query set with any retriever the kit knows, and score the result.

A retriever is named as on the command line: `bm25`, a backbone name (`minilm`, `tiny`, read
zero-shot) or a dual-encoder checkpoint folder written by the kit. Corpus embeddings are cached
per model under `emb_dir`, in shards, so a second evaluation of the same model costs one query pass.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

from .errors import RqaError
from .search import Run


def load_dual_encoder(spec: str, *, pooling: str | None = None, max_length: int | None = None,
                      query_max_length: int | None = None, use_titles: bool = True):
    """A kit checkpoint folder (keeps its own options unless overridden) or a backbone read zero-shot."""
    from .models import DualEncoder

    options = {"use_titles": use_titles}
    if max_length:
        options["passage_max_length"] = max_length
    if query_max_length:
        options["query_max_length"] = query_max_length
    if Path(spec, "rqakit.json").exists():
        de = DualEncoder.from_pretrained(spec)
        for key, value in options.items():
            setattr(de, key, value)
        if pooling:
            de.pooling = pooling
        return de
    pooling = pooling or "cls"
    # A sentence-embedding model read with mean pooling is read as it was trained: normalised.
    return DualEncoder.from_backbone(spec, shared=True, pooling=pooling, normalize=pooling == "mean", **options)


def dense_retrieve(de, corpus, query_sets: Mapping[str, Mapping[str, str]], depth: int, *,
                   emb_dir: Path | None = None, batch_size: int = 64) -> dict[str, Run]:
    """Encode the corpus once (cached shards in emb_dir, else a temporary folder) and search every
    query set: {name: {qid: text}} -> {name: run}, exact inner-product top-depth."""
    import tempfile

    from .encode import encode_corpus, encode_queries
    from .search import dense_search

    with tempfile.TemporaryDirectory() as scratch:
        shards = encode_corpus(de, corpus.iter_docs(), Path(emb_dir or scratch), batch_size=batch_size,
                               total=corpus.known_len() if hasattr(corpus, "known_len") else None)
        runs = {}
        for name, queries in query_sets.items():
            qids = list(queries)
            q_emb = encode_queries(de, [queries[q] for q in qids], batch_size=batch_size)
            runs[name] = dense_search(q_emb, shards, depth, query_ids=qids)
        return runs


def evaluate_command(*, dataset: str, retriever: str, pooling: str | None = None, max_length: int | None = None,
                     query_max_length: int | None = None, rerank: str | None = None, top: int = 30,
                     run_out: str | None = None, depth: int = 100, use_titles: bool = True,
                     measures: list[str] | None = None, batch_size: int = 64) -> dict:
    """`rqakit evaluate`: one JSON object of ir_measures metrics (+ re-ranked metrics) and timings."""
    from .data import load_corpus, load_split
    from .evaluation import DEFAULT_MEASURES, evaluate_run
    from .search import BM25Index, write_trec_run

    measures = list(measures or DEFAULT_MEASURES)
    split = load_split(dataset, require_qrels=True)
    corpus = load_corpus(dataset, use_titles=use_titles)
    start = time.time()
    if retriever == "bm25":
        run = BM25Index.build(corpus, use_titles=use_titles).search(split.queries, depth)
    else:
        de = load_dual_encoder(retriever, pooling=pooling, max_length=max_length,
                               query_max_length=query_max_length, use_titles=use_titles)
        run = dense_retrieve(de, corpus, {"eval": split.queries}, depth, batch_size=batch_size)["eval"]
    result = {"dataset": dataset, "retriever": retriever, "queries": len(split.queries),
              **evaluate_run(run, split.qrels, measures), "retrieve_s": round(time.time() - start, 2)}
    if rerank:
        from .models import CrossEncoder
        from .rerank import rerank as rerank_run

        if not Path(rerank, "rqakit.json").exists():
            raise RqaError(f"--rerank {rerank} is not a cross-encoder folder written by the kit (no rqakit.json)")
        t0 = time.time()
        ce = CrossEncoder.from_pretrained(rerank)
        run = rerank_run(ce, run, split.queries, corpus, top_n=top, batch_size=batch_size)
        result["rerank"] = {"top": top, **evaluate_run(run, split.qrels, measures), "rerank_s": round(time.time() - t0, 2)}
    if run_out:
        write_trec_run(run, run_out)
    return result

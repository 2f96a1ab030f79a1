"""Runs: each query's scored documents, ``dict[str, dict[str, float]]`` (query id -> {doc id -> score},
higher is better), the form ir_measures reads; their ranking and their TREC files.

    ranked(run["q1"])                  # [(doc id, score), ...] best first, ties by doc id
    top_k(run, 10)                     # each query's 10 best
    write_trec_run(run, "x.trec")      # atomically; read_trec_run("x.trec") gives the same floats
    write_ranking(ids, "r.parquet")    # query id -> ranked doc ids, without scores; read_ranking gives them back
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import ir_measures
import numpy as np

from rqakit.atomic import atomic_path
from rqakit.errors import RqaError
from rqakit.types import Run

__all__ = ["Run", "check_k", "check_run_docs", "ranked", "read_ranking", "read_trec_run", "top_k", "write_ranking",
           "write_trec_run"]


def check_k(k, name: str = "k") -> int:
    """A positive integer count (a depth, a top-k), else a one-line RqaError naming `name`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RqaError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def ranked(doc_scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """One query's (doc id, score) pairs, best first; ties broken by doc id so order is deterministic."""
    return sorted(doc_scores.items(), key=lambda item: (-item[1], item[0]))


def top_k(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Each query's k best documents, in rank order."""
    k = check_k(k)
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def write_trec_run(run: Mapping[str, Mapping[str, float]], path, tag: str = "rqakit") -> None:
    """Write ``qid Q0 docid rank score tag`` lines (ranks from 1), atomically: temp file, then rename.

    Scores are written with ``repr`` so reading the file back gives the same floats.
    """
    if not tag or any(ch.isspace() for ch in tag):
        raise RqaError(f"run tag must be one word with no spaces, got {tag!r}")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for qid, docs in run.items():
            for rank, (doc_id, score) in enumerate(ranked(docs), start=1):
                out.write(f"{qid} Q0 {doc_id} {rank} {float(score)!r} {tag}\n")


def read_trec_run(path) -> Run:
    """A TREC run file (read by ``ir_measures.read_trec_run``) as {qid: {doc id: score}}."""
    path = Path(path)
    if not path.is_file():
        raise RqaError(f"run file {path} does not exist; write it with write_trec_run or check the path")
    run: Run = {}
    try:
        for scored in ir_measures.read_trec_run(str(path)):
            run.setdefault(scored.query_id, {})[scored.doc_id] = scored.score
    except ValueError as error:
        raise RqaError(f"{path} is not a TREC run (each line must be 'qid Q0 docid rank score tag'): {error}") from None
    return run


def check_run_docs(run: Mapping[str, Mapping[str, float]], known_doc_ids: Collection[str],
                   collection_id: str = "") -> None:
    """Raise RqaError naming the first document of the run that the collection does not hold."""
    known = known_doc_ids if isinstance(known_doc_ids, (set, frozenset, Mapping)) else set(known_doc_ids)
    for qid, docs in run.items():
        for doc_id in docs:
            if doc_id not in known:
                where = f"the collection {collection_id}" if collection_id else "the collection"
                raise RqaError(f"run names document {doc_id!r} which is not in {where}; "
                               f"was the run (query {qid!r}) made on another collection? rebuild it on this one")




def write_ranking(ranking: Mapping[str, list[str]], path) -> None:
    """Each query's ranked doc ids (no scores) as Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"query_id": pa.array(list(ranking), pa.string()),
                      "doc_ids": pa.array(list(ranking.values()), pa.list_(pa.string()))})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_ranking(path) -> dict[str, list[str]]:
    """What `write_ranking` wrote, in its order; each distinct doc id is one Python string."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids = table["doc_ids"].combine_chunks()
    encoded = pc.dictionary_encode(ids.values)
    names, index, offsets = (encoded.dictionary.to_numpy(zero_copy_only=False), encoded.indices.to_numpy(),
                             ids.offsets.to_numpy())
    return {q: names[index[offsets[i]:offsets[i + 1]]].tolist() for i, q in enumerate(table["query_id"].to_pylist())}

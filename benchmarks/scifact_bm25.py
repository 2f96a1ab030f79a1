"""BM25 (bm25s, the kit's defaults) on beir/scifact/test: nDCG@10, RR@10, R@100 over the 300 queries.

Needs IR_DATASETS_HOME pointing at a writable copy of the pre-populated cache, e.g.

    cp -r /work/shared/ir_datasets /tmp/irds && chmod -R u+w /tmp/irds
    IR_DATASETS_HOME=/tmp/irds python benchmarks/scifact_bm25.py

Prints one JSON object. Reference on this cache: nDCG@10 0.686, RR@10 0.649, R@100 0.913
(BEIR paper, Anserini BM25: nDCG@10 0.665).
"""

from __future__ import annotations

import argparse
import json
import time

import ir_datasets
import ir_measures

from rqakit.data.collection import Doc
from rqakit.search import BM25Index

MEASURES = [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beir/scifact/test")
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--no-titles", action="store_true", help="index the abstract text only")
    args = parser.parse_args()

    start = time.perf_counter()
    dataset = ir_datasets.load(args.dataset)
    docs = (Doc(d.doc_id, "" if args.no_titles else d.title, d.text) for d in dataset.docs_iter())
    index = BM25Index.build(docs)
    indexed = time.perf_counter()
    queries = {q.query_id: q.text for q in dataset.queries_iter()}
    run = index.search(queries, args.depth)
    searched = time.perf_counter()
    qrels = list(dataset.qrels_iter())
    metrics = ir_measures.calc_aggregate(MEASURES, qrels, run)
    print(json.dumps({
        "dataset": args.dataset,
        "docs": len(index),
        "queries": len({q.query_id for q in qrels}),
        "use_titles": not args.no_titles,
        **{str(measure): round(value, 4) for measure, value in metrics.items()},
        "index_s": round(indexed - start, 2),
        "search_s": round(searched - indexed, 2),
        "wall_s": round(time.perf_counter() - start, 2),
    }))


if __name__ == "__main__":
    main()

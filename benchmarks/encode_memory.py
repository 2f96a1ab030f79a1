"""Peak memory of corpus encoding: `rqakit.encode.encode_corpus` on N passages, for several N.

Each N runs in its own subprocess: SciFact's corpus repeated (ids made unique) until N passages,
streamed from a generator into shards of --shard-size rows in a temporary folder. The subprocess
reports its peak RSS (ru_maxrss), its RSS once the model is loaded and as each shard starts; if
encoding streams, the peak does not grow with N. Prints one JSON object with a row per N.

    PYTHONPATH=. python benchmarks/encode_memory.py                      # tiny backbone, minutes
    PYTHONPATH=. python benchmarks/encode_memory.py --backbone minilm --docs 5000,50000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time

import benchutil  # first: points IR_DATASETS_HOME at a writable cache copy
import torch

from rqakit.data.collection import Doc
from rqakit.encode import Throughput, encode_corpus
from rqakit.models import DualEncoder


def repeated_corpus(n: int):
    """N passages: SciFact's corpus read again and again from ir_datasets, id "<doc_id>~<pass>"."""
    for rep in itertools.count():
        for doc in benchutil.scifact_docs():
            if n <= 0:
                return
            n -= 1
            yield Doc(f"{doc.doc_id}~{rep}", doc.title, doc.text)


def with_rss_trace(docs, shard_size: int, trace: list[float]):
    """Pass docs through, noting the RSS (MiB) each time a new shard starts to be read."""
    for index, doc in enumerate(docs):
        if index % shard_size == 0:
            trace.append(round(benchutil.current_rss_mb(), 1))
        yield doc


def measure(args) -> dict:
    """Encode args.worker passages in this process -> its figures."""
    de = DualEncoder.from_backbone(args.backbone, shared=True, pooling="mean", normalize=True,
                                   passage_max_length=args.max_length)
    rss_loaded = benchutil.current_rss_mb()
    stats, trace = Throughput(), []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        docs = with_rss_trace(repeated_corpus(args.worker), args.shard_size, trace)
        shards = encode_corpus(de, docs, out_dir, shard_size=args.shard_size,
                               batch_size=args.batch_size, stats=stats, progress=False)
        count, num_shards = len(shards), shards.num_shards
    seconds = time.perf_counter() - started
    return {"docs": count, "shards": num_shards, "seconds": round(seconds, 1), "docs_per_s": round(count / seconds, 1),
            "rss_after_model_load_mb": round(rss_loaded, 1), "rss_at_each_shard_start_mb": trace,
            "peak_rss_mb": round(benchutil.peak_rss_mb(), 1)}


def run_worker(n: int, args) -> dict:
    command = [sys.executable, __file__, "--worker", str(n), "--backbone", args.backbone, "--shard-size",
               str(args.shard_size), "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker for {n} passages failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny", help="tiny (fast) | minilm | a model folder")
    parser.add_argument("--docs", default="5000,50000", help="comma-separated corpus sizes, one subprocess each")
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker is not None:
        print(json.dumps(measure(args)))
        return
    sizes = [int(n) for n in args.docs.split(",")]
    rows = [run_worker(n, args) for n in sizes]
    print(json.dumps({
        "backbone": args.backbone,
        "shard_size": args.shard_size,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "runs": rows,
        "peak_rss_growth_mb": round(rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"], 1),
        "corpus_ratio": round(rows[-1]["docs"] / rows[0]["docs"], 1),
        "machine": benchutil.machine_state(),
    }))


if __name__ == "__main__":
    main()

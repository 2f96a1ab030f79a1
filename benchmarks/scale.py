"""Memory, disk and time of the kit's corpus-scale code paths on N synthetic passages, for several N.

The passages are MS MARCO-like: about 55 words (normal, sd 15, 12 to 120) drawn from a Zipf law
over the whole words of the backbone's WordPiece vocabulary, no titles, ids "0", "1", ...; they are
generated again from the seed for each step, so no step holds the corpus. Queries: 4 to 10 words
of the same law. Each (N, step) runs in its own subprocess, so each peak RSS (VmHWM: ru_maxrss
would start at the parent's RSS) is that step's alone; `rss_start_mb` is the subprocess after its
imports. The steps are the stages' calls:

    encode       rqakit.encode.encode_corpus: the passage tower into float16 shards (`--shard-size`)
    dense        rqakit.search.dense_search over those shards (faiss IndexFlatIP per shard, merged)
    dense_768    the same over random float16 shards of 768 dimensions (bert-base's), as memmaps
    bm25_build   rqakit.search.BM25Index.build (bm25s) on the stream, then .save
    bm25_search  BM25Index.load, then .search (on `--threads`)
    lists        N / 100 training lists of `--list-size` ids written as augment writes them, then read
                 as the joint stage reads them (training_lists, ListExamples, one step)

At the smallest N, `dense` and `bm25_search` run again with `--query-sweep` queries: their memory
grows with queries x k (the run returned), not with N. Everything runs on `--threads` threads
(torch, faiss, OpenMP) and writes under a temporary folder removed at the end. Prints one JSON
object: per N and step, seconds, rates, peak and start RSS, disk.

    PYTHONPATH=. python benchmarks/scale.py --docs 10000,100000 --note "another job shared the machine"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchutil  # first: points IR_DATASETS_HOME at a writable cache copy
import numpy as np

STEPS = ("encode", "dense", "dense_768", "bm25_build", "bm25_search", "lists")
BLOCK = 10_000   # passages generated per seeded block
SEARCH_DIM = 768


# -- the synthetic collection ------------------------------------------------------------------

def vocabulary(tokenizer_dir: Path) -> np.ndarray:
    """Whole lower-case words (2+ letters) of a WordPiece vocab.txt, in a fixed shuffled order (Zipf ranks)."""
    words = [w for w in (tokenizer_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
             if len(w) > 1 and w.isalpha() and w.isascii()]
    return np.asarray(words, dtype=object)[np.random.default_rng(0).permutation(len(words))]


def zipf(n: int) -> np.ndarray:
    weights = 1.0 / (np.arange(n) + 10.0)
    return weights / weights.sum()


def passages(n: int, words: np.ndarray, seed: int = 0):
    """N passages as rqakit Docs, the same for a seed however they are read; ~55 words each."""
    from rqakit.types import Doc

    p = zipf(len(words))
    for block in range(0, n, BLOCK):
        rng = np.random.default_rng([seed, block])
        size = min(BLOCK, n - block)
        lengths = np.clip(rng.normal(55, 15, size).round().astype(int), 12, 120)
        drawn = words[rng.choice(len(words), size=int(lengths.sum()), p=p)].tolist()
        start = 0
        for i, length in enumerate(lengths):
            yield Doc(str(block + i), "", " ".join(drawn[start:start + length]))
            start += length


def queries(n: int, words: np.ndarray, seed: int = 1) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    p = zipf(len(words))
    return {f"q{i}": " ".join(words[rng.choice(len(words), size=int(rng.integers(4, 11)), p=p)].tolist())
            for i in range(n)}


def doc_bytes(sample: int, words: np.ndarray) -> float:
    """Mean bytes of one Doc of this collection in Python (tuple and its strings)."""
    total = 0
    for doc in passages(sample, words):
        total += sys.getsizeof(doc) + sum(sys.getsizeof(s) for s in doc)
    return total / sample


def peak_rss_mb() -> float:
    """Peak RSS of this program since it was exec'd, MiB (VmHWM): ru_maxrss of a subprocess starts
    at its parent's RSS at fork, so it cannot show a step smaller than the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return benchutil.peak_rss_mb()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


# -- one step in this process --------------------------------------------------------------------

def dual_encoder(args):
    from rqakit.models import DualEncoder

    return DualEncoder.from_backbone(args.backbone, pooling="cls", query_max_length=32,
                                     passage_max_length=args.max_length)


def step_encode(args, work: Path, words) -> dict:
    from rqakit.encode import Throughput, encode_corpus

    de = dual_encoder(args)
    rss_loaded, stats, trace = benchutil.current_rss_mb(), Throughput(), []

    def traced(docs):
        for index, doc in enumerate(docs):
            if index % args.shard_size == 0:
                trace.append(round(benchutil.current_rss_mb(), 1))
            yield doc

    started = time.perf_counter()
    generated = sum(1 for _ in passages(min(args.worker_docs, 5 * BLOCK), words))
    generate_rate = generated / (time.perf_counter() - started)
    started = time.perf_counter()
    shards = encode_corpus(de, traced(passages(args.worker_docs, words)), work / "emb", shard_size=args.shard_size,
                           batch_size=args.batch_size, dtype="float16", stats=stats, progress=False)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "docs_per_s": round(stats.items / seconds, 1),
            "forward_s": round(stats.seconds, 1), "tokens_per_passage": round(stats.tokens / stats.items, 1),
            "generation_docs_per_s": round(generate_rate), "shards": shards.num_shards, "dim": de.embedding_dim,
            "rss_after_model_load_mb": round(rss_loaded, 1),
            "rss_at_shard_starts_mb": trace if len(trace) <= 8 else trace[:4] + trace[-4:],
            "disk_mb": round(disk_mb(work / "emb"), 1)}


def timed_search(search, n_queries: int) -> dict:
    rss_before = benchutil.current_rss_mb()
    started = time.perf_counter()
    run = search()
    seconds = time.perf_counter() - started
    entries = sum(len(r) for r in run.values())
    return {"search_s": round(seconds, 2), "queries_per_s": round(n_queries / seconds, 1), "result_entries": entries,
            "rss_before_search_mb": round(rss_before, 1), "rss_with_run_mb": round(benchutil.current_rss_mb(), 1)}


def step_dense(args, work: Path, words) -> dict:
    from rqakit.encode import EmbeddingShards, encode_queries
    from rqakit.search import dense_search

    de = dual_encoder(args)
    qs = queries(args.queries, words)
    started = time.perf_counter()
    q_emb = encode_queries(de, list(qs.values()), batch_size=args.batch_size, progress=False)
    encode_s = time.perf_counter() - started
    shards = EmbeddingShards(work / "emb")
    out = timed_search(lambda: dense_search(q_emb, shards, args.k, query_ids=list(qs), use_gpu=False), len(qs))
    return {"query_encoding_s": round(encode_s, 2), **out}


def step_dense_768(args, work: Path, words) -> dict:
    """Random float16 shards of SEARCH_DIM columns on disk (memmaps), searched as the kit searches."""
    from rqakit.search import dense_search

    folder, n = work / "emb768", args.worker_docs
    folder.mkdir(exist_ok=True)
    starts = range(0, n, args.shard_size)
    for index, start in enumerate(starts):
        path = folder / f"shard_{index:05d}.npy"
        if not path.is_file():
            rows = min(args.shard_size, n - start)
            np.save(path, np.random.default_rng(index).standard_normal((rows, SEARCH_DIM), dtype=np.float32).astype(np.float16))

    def shards():   # one memmap at a time, as EmbeddingShards hands them out
        for index, start in enumerate(starts):
            emb = np.load(folder / f"shard_{index:05d}.npy", mmap_mode="r")
            yield [str(i) for i in range(start, start + len(emb))], emb

    q_emb = np.random.default_rng(10**6).standard_normal((args.queries, SEARCH_DIM), dtype=np.float32)
    qids = [f"q{i}" for i in range(args.queries)]
    out = timed_search(lambda: dense_search(q_emb, shards(), args.k, query_ids=qids, use_gpu=False), args.queries)
    gflop = 2 * args.queries * n * SEARCH_DIM / 1e9
    return {**out, "gflop": round(gflop, 1), "gflop_per_s": round(gflop / out["search_s"], 1),
            "disk_mb": round(disk_mb(folder), 1)}


def step_bm25_build(args, work: Path, words) -> dict:
    from rqakit.search import BM25Index

    started = time.perf_counter()
    index = BM25Index.build(passages(args.worker_docs, words))
    build_s = time.perf_counter() - started
    rss_built = benchutil.current_rss_mb()
    started = time.perf_counter()
    index.save(work / "bm25")
    return {"build_s": round(build_s, 1), "docs_per_s": round(args.worker_docs / build_s, 1),
            "save_s": round(time.perf_counter() - started, 1), "rss_after_build_mb": round(rss_built, 1),
            "nonzeros": int(index.retriever.scores["data"].shape[0]), "disk_mb": round(disk_mb(work / "bm25"), 1)}


def step_bm25_search(args, work: Path, words) -> dict:
    from rqakit.search import BM25Index

    started = time.perf_counter()
    index = BM25Index.load(work / "bm25")
    load_s = time.perf_counter() - started
    qs = queries(args.queries, words)
    return {"load_s": round(load_s, 1), **timed_search(lambda: index.search(qs, args.k), len(qs))}


def step_lists(args, work: Path, words) -> dict:
    import gc
    from types import SimpleNamespace

    import pandas as pd

    from rqakit.mining import training_lists, write_lists
    from rqakit.stages.common import PlannedSteps
    from rqakit.stages.joint import ListExamples

    n, m = max(1, args.worker_docs // 100), args.list_size
    distinct = max(m, n * m // 15)   # msmarco: 128.5M list entries over 8.8M passages
    rng = np.random.default_rng(0)
    write_lists(pd.DataFrame({
        "query_id": [f"q{i}" for i in range(n)], "kind": "denoised",
        "doc_ids": [[str(x) for x in rng.integers(0, distinct, m)] for _ in range(n)],
        "labels": [[1] + [0] * (m - 1)] * n, "ce_scores": [rng.normal(size=m).tolist() for _ in range(n)],
        "positive_source": "labelled", "fallback": False}), work / "lists.parquet")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")   # the peak (VmHWM) from here on: reading, not writing
    rss_before = benchutil.current_rss_mb()
    started = time.perf_counter()
    lists = training_lists(work / "lists.parquet", list_size=m)
    docs = SimpleNamespace(get_many=lambda ids: list(passages(len(ids), words)))   # any m passages
    ws = SimpleNamespace(train=SimpleNamespace(queries={q: q for q in lists.query_ids}), corpus=docs)
    step = PlannedSteps(ListExamples(ws, lists, lists.ce_scores), [[[0, 1, 2]]])[0]
    return {"lists": n, "list_size": m, "distinct_passages": len(lists.doc_ids),
            "seconds": round(time.perf_counter() - started, 1), "rss_before_read_mb": round(rss_before, 1),
            "rss_after_read_mb": round(benchutil.current_rss_mb(), 1), "docs_in_one_step": sum(len(e.docs) for e in step[0]),
            "disk_mb": round((work / "lists.parquet").stat().st_size / 2**20, 1)}


def worker(args) -> dict:
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    from rqakit.models.backbone import resolve_backbone

    words = vocabulary(Path(resolve_backbone(args.backbone)))
    rss_start = benchutil.current_rss_mb()
    out = globals()[f"step_{args.step}"](args, Path(args.work), words)
    return {"rss_start_mb": round(rss_start, 1), **out, "peak_rss_mb": round(peak_rss_mb(), 1),
            "load_average_1min": round(os.getloadavg()[0], 2)}


# -- the driver ----------------------------------------------------------------------------------

def run_step(step: str, n: int, work: Path, args, n_queries: int) -> dict:
    command = [sys.executable, __file__, "--step", step, "--worker-docs", str(n), "--work", str(work),
               "--backbone", args.backbone, "--shard-size", str(args.shard_size), "--max-length", str(args.max_length),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--queries", str(n_queries),
               "--k", str(args.k), "--list-size", str(args.list_size)]
    env = {**os.environ, **{name: str(args.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"step {step} at N = {n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", default="10000,100000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"some of {','.join(STEPS)} (dense needs encode, "
                        "bm25_search needs bm25_build)")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--shard-size", type=int, default=50_000, help="encode_corpus's default")
    parser.add_argument("--max-length", type=int, default=128, help="passage max length (msmarco's p_max_len)")
    parser.add_argument("--batch-size", type=int, default=512, help="msmarco's evaluate.batch_size")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--query-sweep", type=int, default=4000, help="queries of the extra searches at the smallest N "
                        "(0: none)")
    parser.add_argument("--k", type=int, default=1000, help="search depth (msmarco's retrieve_depth)")
    parser.add_argument("--list-size", type=int, default=128, help="ids per training list (msmarco's m)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="recorded as is, e.g. what else ran on the machine")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-docs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:
        print(json.dumps(worker(args)))
        return
    import torch

    from rqakit.models.backbone import resolve_backbone

    torch.set_num_threads(args.threads)
    words = vocabulary(Path(resolve_backbone(args.backbone)))
    steps = [s for s in args.steps.split(",") if s]
    sizes = [int(n) for n in args.docs.split(",")]
    rows = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"rqakit-scale-{n}-"))
        try:
            row = {"docs": n}
            for step in steps:
                row[step] = run_step(step, n, work, args, args.queries)
                if n == sizes[0] and args.query_sweep and step in ("dense", "dense_768", "bm25_search"):
                    row[f"{step}@{args.query_sweep}q"] = run_step(step, n, work, args, args.query_sweep)
                print(f"N={n} {step}: {json.dumps(row[step])}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
    print(json.dumps({
        "backbone": args.backbone, "shard_size": args.shard_size, "max_length": args.max_length,
        "batch_size": args.batch_size, "queries": args.queries, "k": args.k, "threads": args.threads,
        "words_in_vocabulary": len(words), "doc_object_bytes": round(doc_bytes(2000, words), 1),
        "rows": rows, "machine": {**benchutil.machine_state(), "cpu": cpu_model()}, "note": args.note,
    }))


if __name__ == "__main__":
    main()

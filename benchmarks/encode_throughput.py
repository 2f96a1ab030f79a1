"""Passage encoding: the kit (`rqakit.encode.encode_passages`) against sentence-transformers' `encode`.

Both read all-MiniLM-L6-v2 with mean pooling and normalisation on the same SciFact passages
("title text" as one string, so both see `[CLS] title text [SEP]`), the same max length and batch
size, one after the other in one process. The kit runs a bf16-weight copy on a bf16 CPU, in
length-sorted batches (fp32 on a CPU without native bf16); sentence-transformers runs fp32 as it
ships. Prints one JSON object: docs/s of each, the speed-up, the cosine of the kit's embeddings to
the fp32 ones, the machine's matmul peaks (bf16 only where native) and the kit's achieved GFLOP/s
as a share of the peak of the precision it ran in (bf16 on a bf16 CPU).

    PYTHONPATH=. python benchmarks/encode_throughput.py --docs 300
"""

from __future__ import annotations

import argparse
import json
import time

import benchutil  # first: points IR_DATASETS_HOME at a writable cache copy
import numpy as np
import torch

from rqakit.encode import Throughput, encode_passages
from rqakit.models import DualEncoder, resolve_backbone
from rqakit.runtime import compute_dtype as runtime_dtype
from rqakit.runtime import dtype_name

BACKBONE = "minilm"


def kit_encode(docs, max_length: int, batch_size: int) -> tuple[np.ndarray, float, Throughput, DualEncoder]:
    """(n, d) kit embeddings, wall seconds (tokenising included), forward-only figures, the model."""
    de = DualEncoder.from_backbone(BACKBONE, shared=True, pooling="mean", normalize=True,
                                   passage_max_length=max_length)
    encode_passages(de, docs[:batch_size], batch_size=batch_size, progress=False)  # warm-up, not timed
    stats = Throughput()
    started = time.perf_counter()
    embeddings = encode_passages(de, docs, batch_size=batch_size, stats=stats, progress=False)
    return embeddings, time.perf_counter() - started, stats, de


def st_encode(texts, max_length: int, batch_size: int) -> tuple[np.ndarray, float]:
    """(n, d) fp32 sentence-transformers embeddings and wall seconds."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_backbone(BACKBONE), device="cpu", local_files_only=True)
    model.max_seq_length = max_length
    kwargs = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    model.encode(texts[:batch_size], **kwargs)  # warm-up, not timed
    started = time.perf_counter()
    embeddings = model.encode(texts, **kwargs)
    return embeddings, time.perf_counter() - started


def kit_forward_flops(de: DualEncoder, docs, batch_size: int) -> float:
    """FLOPs of the kit's forwards: its own tokenisation, length-sorted batches padded per batch."""
    lengths = [len(ids) for ids in de.tokenize_passages(docs, pad=False)["input_ids"]]
    shape = benchutil.EncoderShape.of(de.passage_encoder)
    return shape.forward_flops(benchutil.padded_lengths(lengths, batch_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="first N SciFact passages (default: all 5,183)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for everything, the peaks included")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    docs = [benchutil.as_single_text(doc) for doc in benchutil.scifact_docs(args.docs)]
    texts = [doc.text for doc in docs]
    peaks = benchutil.matmul_peaks()

    kit_emb, kit_s, stats, de = kit_encode(docs, args.max_length, args.batch_size)
    st_emb, st_s = st_encode(texts, args.max_length, args.batch_size)
    cosine = np.sum(kit_emb.astype(np.float64) * st_emb.astype(np.float64), axis=1)  # both unit vectors
    flops = kit_forward_flops(de, docs, args.batch_size)
    kit_gflops = flops / stats.seconds / 1e9
    compute_dtype = runtime_dtype("cpu")

    print(json.dumps({
        "backbone": BACKBONE,
        "docs": len(docs),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "kit": {"docs_per_s": round(len(docs) / kit_s, 1), "wall_s": round(kit_s, 2),
                "forward_s": round(stats.seconds, 2), "compute_dtype": dtype_name(compute_dtype),
                "real_tokens": stats.tokens, "padded_tokens": stats.padded_tokens},
        "sentence_transformers": {"docs_per_s": round(len(docs) / st_s, 1), "wall_s": round(st_s, 2),
                                  "compute_dtype": "float32"},
        "speedup": round(st_s / kit_s, 2),
        "cosine_to_fp32": {"min": round(float(cosine.min()), 6), "mean": round(float(cosine.mean()), 6)},
        "matmul_peak_gflops": {k: None if v is None else round(v, 1) for k, v in peaks.items()},
        "kit_forward_gflop": round(flops / 1e9, 1),
        "kit_gflops_per_s": round(kit_gflops, 1),
        "kit_share_of_peak": benchutil.share_of_peak(kit_gflops, peaks, compute_dtype),
        "machine": benchutil.machine_state(),
    }))


if __name__ == "__main__":
    main()

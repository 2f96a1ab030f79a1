"""What a CPU cannot check, on the GPUs present, in one run of a few minutes; one JSON summary.

    matmul       bf16 and fp16 matmul peaks (`rqakit.plan.matmul_peak_gflops`)
    joint        `JointDistillation` steps as the joint stage trains them (`rqakit.training.train`, the msmarco
                 profile's joint section: m = 128, 3 queries per micro-batch, every text at its max length)
                 on bert-base, under bf16 autocast and under fp16 autocast with the GradScaler: s/step,
                 TFLOP/s, peak GPU memory, and the largest micro-batch (queries) that fits
    faiss        `rqakit.search.dense_search` on the GPU against one faiss-cpu IndexFlatIP over the same
                 10^6 random float16 vectors of 768 dimensions: top-k overlap, identical rankings, qps
    distributed  one process per GPU as torchrun starts them (`rqakit.runtime.init_distributed`: NCCL):
                 an all_reduce checked, its bus bandwidth on a buffer of the joint towers' gradient size,
                 one DDP step of `train()` and the weights compared across ranks
    encode       `encode_passages` and `score_pairs` throughput of bert-base on MS MARCO-like passages

bert-base is read from the Hugging Face cache, else built from its config with random weights (the
same shapes and FLOPs). Without CUDA every part is skipped with its reason. `--cpu-smoke` runs the
same code on the CPU at tiny sizes (tiny backbone, m = 8, 2,000 vectors of 32 dimensions, 2 gloo
processes); readings only a GPU gives are then marked skipped. Every part reports "status" (ok,
skipped with "reason", failed with "error"); "ok" is true when no part failed.

    PYTHONPATH=. python benchmarks/gpu_check.py                 # on a GPU machine (environment.yml)
    PYTHONPATH=. python benchmarks/gpu_check.py --cpu-smoke     # the same paths on a CPU, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

# The check reads no collection and downloads nothing: an empty ir_datasets home keeps benchutil from
# asking for the SciFact cache, and the Hugging Face hub stays offline (bert-base falls back to random weights).
os.environ.setdefault("IR_DATASETS_HOME", str(Path(tempfile.gettempdir()) / "rqakit_gpu_check_irds"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import benchutil
import numpy as np
import torch

PARTS = ("matmul", "joint", "faiss", "distributed", "encode")
NO_CUDA = "CUDA is not available (torch.cuda.is_available() is False)"
H100_BF16_DENSE_PEAK_TFLOPS = 989.0


@dataclass
class Sizes:
    backbone: str = "bert-base"
    list_size: int = 128          # msmarco's joint.list_size
    micro_queries: int = 3        # msmarco's joint.micro_batch_queries
    steps: int = 4                # the first is a warm-up
    probe_cap: int = 64           # largest micro-batch tried
    vectors: int = 1_000_000
    dim: int = 768
    search_queries: int = 1000
    k: int = 100
    shard_size: int = 50_000      # encode_corpus's default
    encode_passages: int = 20_000
    score_pairs: int = 8_000
    batch_size: int = 512         # msmarco's evaluate.batch_size
    allreduce_mb: int = 1300      # fp32 gradients of three bert-base towers
    matmul_size: int = 8192


SMOKE = Sizes(backbone="tiny", list_size=8, micro_queries=2, steps=2, probe_cap=2, vectors=2000, dim=32,
              search_queries=50, k=10, shard_size=500, encode_passages=200, score_pairs=100, batch_size=64,
              allreduce_mb=1, matmul_size=256)


def skipped(reason: str, **fields) -> dict:
    return {"status": "skipped", "reason": reason, **fields}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device):
    if device.type != "cuda":
        return skipped("peak GPU memory needs CUDA")
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


@contextlib.contextmanager
def forced_dtype(dtype: torch.dtype):
    """`rqakit.runtime.compute_dtype` answers `dtype` in the block: fp16 is what the kit picks on a
    GPU without bf16 (autocast fp16 and the GradScaler); on a CPU it puts the same code on that path."""
    from rqakit import runtime

    original = runtime.compute_dtype
    runtime.compute_dtype = lambda device, precision=None: dtype
    try:
        yield
    finally:
        runtime.compute_dtype = original


def profile():
    from rqakit.config import load_config

    return load_config("msmarco")


# -- the models ---------------------------------------------------------------------------------

def towers(sizes: Sizes):
    """(DualEncoder with separate towers, CrossEncoder, where the weights came from), the msmarco profile's shapes."""
    from rqakit.errors import RqaError
    from rqakit.models import CrossEncoder, DualEncoder

    m = profile().model
    de_options = dict(pooling=m.pooling, query_max_length=m.q_max_len, passage_max_length=m.p_max_len)
    ce_options = dict(pooling=m.ce_pooling, max_length=m.ce_max_len, query_max_length=m.ce_query_max_len)
    try:
        return (DualEncoder.from_backbone(sizes.backbone, **de_options),
                CrossEncoder.from_backbone(sizes.backbone, **ce_options), "pretrained")
    except (RqaError, OSError, ValueError):
        if sizes.backbone != "bert-base":
            raise
    from transformers import AutoModel, BertConfig

    from rqakit.models.backbone import load_tokenizer, resolve_backbone

    tokenizer = load_tokenizer(resolve_backbone("tiny"))   # bert-base-uncased's WordPiece vocabulary

    def bert():
        return AutoModel.from_config(BertConfig(), attn_implementation="sdpa")

    return (DualEncoder(bert(), bert(), tokenizer, **de_options), CrossEncoder(bert(), tokenizer, **ce_options),
            "random (bert-base config; not in the Hugging Face cache)")


def filler(n_words: int, offset: int) -> str:
    words = ("protein binding regulates cell growth in human tissue samples while receptor signalling "
             "controls gene expression during early development of the immune response").split()
    return " ".join(words[(offset + i) % len(words)] for i in range(n_words))


def list_examples(n: int, m: int):
    """n lists of m untitled passages, every text long enough to be cut at its max length."""
    from rqakit.objectives import ListExample
    from rqakit.types import Doc

    return [ListExample(filler(64, q), [Doc(f"{q}-{j}", "", filler(320, q + j)) for j in range(m)]) for q in range(n)]


# -- parts ---------------------------------------------------------------------------------------

def part_matmul(sizes: Sizes, device: torch.device) -> dict:
    from rqakit.plan import matmul_peak_gflops

    if device.type != "cuda":
        fp32 = matmul_peak_gflops(torch.float32, device=device, size=sizes.matmul_size)
        return {"status": "ok", "cpu_fp32_gflops": round(fp32, 1), "bf16_tflops": skipped("GPU peaks need CUDA"),
                "fp16_tflops": skipped("GPU peaks need CUDA")}
    out = {"status": "ok"}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        tflops = matmul_peak_gflops(dtype, device=device, size=sizes.matmul_size, repeats=20) / 1000
        out[f"{name}_tflops"] = round(tflops, 1)
    out["bf16_share_of_h100_dense_peak"] = round(out["bf16_tflops"] / H100_BF16_DENSE_PEAK_TFLOPS, 3)
    return out


def joint_objective(de, ce):
    """The joint stage's objective and optimizer settings under the msmarco profile."""
    from rqakit.objectives import JointDistillation
    from rqakit.training import OptimSettings

    j = profile().joint
    objective = JointDistillation(de.train(), ce.train(), static=False, ce_loss=j.ce_loss, kl_direction=j.kl_direction,
                                  kl_grad_to_ce=j.kl_grad_to_ce, kl_reduction=j.kl_reduction, in_batch=j.in_batch)
    optim = OptimSettings(lr=j.lr, weight_decay=j.weight_decay, warmup_ratio=0.0, schedule="constant", clip=j.clip)
    return objective, optim


def step_flops(objective, examples) -> float:
    """FLOPs of one training step (3 x forward) of the three towers over these examples, at their padded lengths."""
    from rqakit.plan import flops_per_token

    batch = objective.collate(examples)
    total = 0.0
    for key, config in (("q", objective.de.query_encoder.config), ("p", objective.de.passage_encoder.config),
                        ("pairs", objective.ce.backbone.config)):
        rows, width = batch[key]["input_ids"].shape
        total += 3 * rows * width * flops_per_token(config, width)
    return total


def train_steps(objective, optim, plan, device):
    from rqakit.training import train

    return train(objective, plan, objective.collate, optim=optim, device=device, precision=True, desc="gpu_check",
                 log=lambda *_: None)


def largest_micro_batch(objective, optim, examples, cap: int, device: torch.device) -> dict:
    """Doubling, then bisection: the most queries of m passages one training step takes without running out
    of memory (the optimizer's state included), up to `cap`; the peak memory of each micro-batch that fit."""
    fits, fails, peaks = 0, None, {}

    def attempt(q: int) -> bool:
        reset_peak(device)
        try:
            train_steps(objective, optim, [[examples[:q]]], device)
            if device.type == "cuda":
                peaks[str(q)] = peak_gib(device)
            return True
        except RuntimeError as error:   # torch.cuda.OutOfMemoryError, or cuBLAS failing to allocate
            if "out of memory" not in str(error).lower():
                raise
            return False
        finally:
            objective.zero_grad(set_to_none=True)
            reset_peak(device)

    q = 1
    while q <= cap and attempt(q):
        fits, q = q, q * 2
    if fits and q <= cap:
        fails = q
        while fails - fits > 1:
            middle = (fits + fails) // 2
            fits, fails = (middle, fails) if attempt(middle) else (fits, middle)
    return {"largest_micro_batch_queries": fits, "first_that_failed": fails, "cap": cap,
            "capped": fails is None and fits == cap,
            "peak_gib_by_queries": peaks if device.type == "cuda" else skipped("peak GPU memory needs CUDA")}


def part_joint(sizes: Sizes, device: torch.device) -> dict:
    de, ce, weights = towers(sizes)
    objective, optim = joint_objective(de, ce)
    m, micro = sizes.list_size, sizes.micro_queries
    examples = list_examples(max(sizes.probe_cap, micro * sizes.steps), m)
    plan = [[examples[i * micro:(i + 1) * micro]] for i in range(sizes.steps)]
    flops = step_flops(objective, plan[0][0])
    out = {"status": "ok", "backbone": sizes.backbone, "weights": weights, "list_size": m, "micro_batch_queries": micro,
           "steps": sizes.steps, "gflop_per_step": round(flops / 1e9, 1)}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16_grad_scaler", torch.float16)):
        with forced_dtype(dtype):
            from rqakit.runtime import loss_scaler

            reset_peak(device)
            result = train_steps(objective, optim, plan, device)
            sync(device)
            seconds = [row["seconds"] for row in result.history[1:]] or [result.history[0]["seconds"]]
            losses = [row["loss"] for row in result.history]
            step_s = float(np.mean(seconds))
            out[name] = {"grad_scaler": loss_scaler(device) is not None, "step_s": round(step_s, 4),
                         "s_per_query": round(step_s / micro, 4), "tflops": round(flops / step_s / 1e12, 2),
                         "losses": [round(v, 4) for v in losses], "loss_finite": all(math.isfinite(v) for v in losses),
                         "peak_gpu_gib": peak_gib(device)}
            if device.type == "cuda":
                out[name]["share_of_h100_dense_peak"] = round(flops / step_s / 1e12 / H100_BF16_DENSE_PEAK_TFLOPS, 3)
            out[name]["memory"] = largest_micro_batch(objective, optim, examples, sizes.probe_cap, device)
    return out


def part_faiss(sizes: Sizes, device: torch.device) -> dict:
    """The kit's sharded search (on the GPU when faiss has one) against one faiss-cpu index over all vectors."""
    import faiss

    from rqakit.search import dense_search, faiss_has_gpu

    gpu = faiss_has_gpu()
    rng = np.random.default_rng(0)
    base = rng.standard_normal((sizes.vectors, sizes.dim), dtype=np.float32).astype(np.float16)
    queries = rng.standard_normal((sizes.search_queries, sizes.dim), dtype=np.float32)
    ids = [str(i) for i in range(sizes.vectors)]
    shards = [(ids[i:i + sizes.shard_size], base[i:i + sizes.shard_size]) for i in range(0, sizes.vectors, sizes.shard_size)]
    qids = [f"q{i}" for i in range(sizes.search_queries)]

    started = time.perf_counter()
    reference = faiss.IndexFlatIP(sizes.dim)
    reference.add(base.astype(np.float32))
    ref_scores, ref_rows = reference.search(queries, sizes.k)
    cpu_s = time.perf_counter() - started
    del reference

    started = time.perf_counter()
    run = dense_search(queries, shards, sizes.k, query_ids=qids, use_gpu=gpu)
    kit_s = time.perf_counter() - started
    overlap, same, diff = [], 0, 0.0
    for row, qid in enumerate(qids):
        got, want = list(run[qid]), [str(i) for i in ref_rows[row]]
        overlap.append(len(set(got) & set(want)) / sizes.k)
        same += got == want
        diff = max(diff, float(np.max(np.abs(np.asarray(list(run[qid].values())) - ref_scores[row]))))
    return {"status": "ok", "vectors": sizes.vectors, "dim": sizes.dim, "queries": sizes.search_queries, "k": sizes.k,
            "kit_search_on": "gpu" if gpu else "cpu",
            "gpu": None if gpu else skipped("faiss has no GPU support here (faiss-cpu, or no GPU): the kit searched on the CPU"),
            "topk_overlap_mean": round(float(np.mean(overlap)), 4), "topk_overlap_min": round(float(np.min(overlap)), 4),
            "identical_rankings": round(same / len(qids), 4), "max_score_diff": diff,
            "kit_s": round(kit_s, 2), "kit_qps": round(len(qids) / kit_s, 1),
            "cpu_reference_s": round(cpu_s, 2), "cpu_reference_qps": round(len(qids) / cpu_s, 1),
            "faiss_cpu_threads": faiss.omp_get_max_threads()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, folder: str, smoke: bool) -> None:
    """One process as torchrun would start it: the kit joins the group, checks an all_reduce, times one of the
    joint towers' gradient size and takes one DDP step of `train()` (tiny towers); writes rank<r>.json."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from rqakit.runtime import init_distributed, pick_device

    sizes = SMOKE if smoke else Sizes()
    init_distributed()
    device = pick_device("auto")
    out = {"rank": rank, "backend": dist.get_backend(), "device": str(device)}
    t = torch.full((4,), float(rank + 1), device=device)
    dist.all_reduce(t)
    out["all_reduce_ok"] = bool(torch.all(t == world * (world + 1) / 2))
    buffer = torch.ones(sizes.allreduce_mb * 2**20 // 4, device=device)
    dist.all_reduce(buffer)
    sync(device)
    started = time.perf_counter()
    for _ in range(3):
        dist.all_reduce(buffer)
    sync(device)
    seconds = (time.perf_counter() - started) / 3
    out["allreduce_mb"], out["allreduce_s"] = sizes.allreduce_mb, round(seconds, 5)
    out["bus_gb_per_s"] = round(2 * (world - 1) / world * buffer.numel() * 4 / seconds / 1e9, 1)
    del buffer

    from rqakit.models import CrossEncoder, DualEncoder

    objective, optim = joint_objective(DualEncoder.from_backbone("tiny"), CrossEncoder.from_backbone("tiny"))
    examples = list_examples(2 * world, 8)
    result = train_steps(objective, optim, [[examples[2 * r:2 * r + 2] for r in range(world)]], device)
    out["ddp_wrapped"] = world > 1
    out["ddp_loss"] = result.history[0]["loss"]
    out["param_checksum"] = float(sum(p.detach().double().sum() for p in objective.parameters()))
    Path(folder, f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


def part_distributed(sizes: Sizes, device: torch.device, smoke: bool) -> dict:
    import torch.multiprocessing as mp

    world = torch.cuda.device_count() if device.type == "cuda" else 2
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()   # CUDA cannot be forked; on the CPU a fork skips the imports
        mp.start_processes(rank_main, args=(world, free_port(), folder, smoke), nprocs=world, join=True,
                           start_method="spawn" if device.type == "cuda" else "fork")
        seconds = time.perf_counter() - started
        ranks = [json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(world)]
    checksums = {r["param_checksum"] for r in ranks}
    out = {"status": "ok", "world_size": world, "backend": ranks[0]["backend"], "seconds": round(seconds, 1),
           "all_reduce_ok": all(r["all_reduce_ok"] for r in ranks), "ddp_wrapped": ranks[0]["ddp_wrapped"],
           "params_equal_across_ranks": len(checksums) == 1, "ddp_loss_finite": all(math.isfinite(r["ddp_loss"]) for r in ranks),
           "allreduce_mb": ranks[0]["allreduce_mb"], "allreduce_s": ranks[0]["allreduce_s"],
           "bus_gb_per_s": ranks[0]["bus_gb_per_s"]}
    if device.type != "cuda":
        out["nccl"] = skipped("NCCL needs CUDA: the same code ran on gloo")
    elif world == 1:
        out["ddp"] = skipped("one GPU: the process group and all_reduce ran, but train() wraps DDP only for 2+ processes")
    return out


def part_encode(sizes: Sizes, device: torch.device) -> dict:
    from scale import passages, queries, vocabulary

    from rqakit.encode import Throughput, encode_passages, score_pairs
    from rqakit.models.backbone import resolve_backbone
    from rqakit.plan import flops_per_token

    de, ce, weights = towers(sizes)
    de.to(device)
    ce.to(device)
    words = vocabulary(Path(resolve_backbone("tiny")))
    docs = list(passages(sizes.encode_passages, words))
    out = {"status": "ok", "backbone": sizes.backbone, "weights": weights, "batch_size": sizes.batch_size}
    for name, run, model in (
            ("encode_passages", lambda stats: encode_passages(de, docs, batch_size=sizes.batch_size, stats=stats,
                                                              progress=False), de.passage_encoder),
            ("score_pairs", lambda stats: score_pairs(ce, list(queries(sizes.score_pairs, words).values()),
                                                      docs[:sizes.score_pairs], batch_size=sizes.batch_size, stats=stats,
                                                      progress=False), ce.backbone)):
        run(Throughput())   # warm-up
        sync(device)
        stats = Throughput()
        started = time.perf_counter()
        run(stats)
        sync(device)
        seconds = time.perf_counter() - started
        width = stats.padded_tokens / stats.items
        tflops = stats.padded_tokens * flops_per_token(model.config, width) / seconds / 1e12
        out[name] = {"items": stats.items, "per_s": round(stats.items / seconds, 1),
                     "tokens_per_item": round(stats.tokens / stats.items, 1), "padded_per_item": round(width, 1),
                     "tflops": round(tflops, 3)}
    return out


# -- the summary --------------------------------------------------------------------------------

def run_part(name: str, call) -> dict:
    started = time.perf_counter()
    try:
        out = call()
    except Exception as error:   # one part failing must not hide the others' readings
        out = {"status": "failed", "error": f"{type(error).__name__}: {error}",
               "traceback": traceback.format_exc(limit=6)[-2000:]}
    out["part_s"] = round(time.perf_counter() - started, 1)
    print(f"[gpu_check] {name}: {out['status']} in {out['part_s']} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="the same code paths on the CPU at tiny sizes")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; use some of {', '.join(PARTS)}")
    print(json.dumps(summary(parts, cpu_smoke=args.cpu_smoke)))


def summary(parts=PARTS, *, cpu_smoke: bool = False) -> dict:
    """Run the parts (on CUDA, or on the CPU at tiny sizes with `cpu_smoke`) -> the JSON summary."""
    import faiss

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda and not cpu_smoke else "cpu")
    sizes = SMOKE if cpu_smoke else Sizes()
    calls = {"matmul": lambda: part_matmul(sizes, device), "joint": lambda: part_joint(sizes, device),
             "faiss": lambda: part_faiss(sizes, device), "distributed": lambda: part_distributed(sizes, device, cpu_smoke),
             "encode": lambda: part_encode(sizes, device)}
    started = time.perf_counter()
    results = {}
    for name in parts:
        if device.type != "cuda" and not cpu_smoke:
            results[name] = skipped(f"{NO_CUDA}; --cpu-smoke runs the same code on the CPU at tiny sizes")
        else:
            results[name] = run_part(name, calls[name])
    return {
        "mode": "cpu-smoke" if cpu_smoke else ("cuda" if cuda else "no-cuda"),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "gpus": torch.cuda.device_count() if cuda else 0, "torch": torch.__version__, "cuda": torch.version.cuda,
        "faiss": faiss.__version__, "sizes": asdict(sizes), "parts": results,
        "ok": not any(r["status"] == "failed" for r in results.values()),
        "seconds": round(time.perf_counter() - started, 1), "machine": benchutil.machine_state(),
    }


if __name__ == "__main__":
    main()

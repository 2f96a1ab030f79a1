"""One joint training step (RocketQAv2 Eq. 6) of `rqakit.objectives.JointDistillation`, timed.

MiniLM query tower, passage tower and cross-encoder; 4 queries x m passages with every sequence
at its max length (query 32, passage 128, query + passage 160 tokens); the forward under
`rqakit.runtime.autocast` (bf16 on a bf16 CPU, fp32 elsewhere), backward, clip 1, AdamW step: the
kit's (CPU dropout masks, fused AdamW), or with `--path torch` torch's dropout and default AdamW,
or with `--path compile` the three towers under `torch.compile` (inductor, its own dropout RNG)
and fused AdamW; compilation happens in the warm-up steps and is timed apart.
For each m: steps/s, seconds per step, peak RSS of the process so far (m ascending), FLOPs of the
three towers (forward + backward ~ 3 x forward) and their share of the matmul peak of the
precision used. For m = 8 it also times the official code's way, the query re-encoded once per
row of its list (m query copies instead of one). Prints one JSON object.

    PYTHONPATH=. python benchmarks/joint_step.py                  # m = 8, 16, 32; 1 warm-up + 3 timed
    PYTHONPATH=. python benchmarks/joint_step.py --m 8 --steps 1
"""

from __future__ import annotations

import argparse
import json
import time

import benchutil  # first: points IR_DATASETS_HOME at a writable cache copy
import torch

from rqakit.data.collection import Doc
from rqakit.losses import joint_loss
from rqakit.models import CrossEncoder, DualEncoder, cpu_dropout
from rqakit.objectives import JointDistillation, ListExample
from rqakit.runtime import autocast, cpu_supports_bf16, dtype_name
from rqakit.training import OptimSettings, make_optimizer, param_groups

QUERIES, Q_LEN, P_LEN, CE_LEN = 4, 32, 128, 160
WORDS = ("protein binding regulates cell growth in human tissue samples while receptor signalling "
         "controls gene expression during early development of the immune response").split()


def filler(n_words: int, offset: int) -> str:
    """n_words real words (about one token each), shifted by `offset` so texts differ."""
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n_words))


def make_examples(m: int) -> list[ListExample]:
    """QUERIES lists of m passages, each text long enough to be cut at its max length."""
    return [ListExample(filler(2 * Q_LEN, q), [Doc(f"{q}-{j}", filler(6, j), filler(2 * CE_LEN, q + j))
                                               for j in range(m)])
            for q in range(QUERIES)]


def torch_dropout(model: torch.nn.Module) -> None:
    """Undo `rqakit.models.cpu_dropout.install`: torch's nn.Dropout and transformers' SDPA."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, cpu_dropout.Dropout):
                setattr(parent, name, torch.nn.Dropout(child.p))
    for module in model.modules():
        if getattr(getattr(module, "config", None), "_attn_implementation", None) == cpu_dropout.ATTENTION:
            module.set_attn_implementation("sdpa")


def official_forward(objective: JointDistillation, batch: dict) -> dict:
    """The official joint_encoder.py: each list row holds its own query copy, s_de (B, m) = q_i . p_i."""
    b, m = batch["shape"]
    de = objective.de
    q = de.encode_queries(batch["q_per_row"]).float().view(b, m, -1)   # (B, m, d): m copies per query
    p = de.encode_passages(batch["p"]).float().view(b, m, -1)           # (B, m, d)
    s_de = (q * p).sum(-1) / de.temperature                             # (B, m)
    s_ce = objective.ce(batch["pairs"]).float().view(b, m)              # (B, m)
    return joint_loss(s_de, s_ce, **objective.loss_options)


def collate(objective: JointDistillation, examples: list[ListExample], official: bool) -> dict:
    batch = objective.collate(examples)
    if official:
        m = len(examples[0].docs)
        batch["q_per_row"] = objective.de.tokenize_queries([e.query for e in examples for _ in range(m)])
    widths = (batch["q"]["input_ids"].shape[1], batch["p"]["input_ids"].shape[1], batch["pairs"]["input_ids"].shape[1])
    if widths != (Q_LEN, P_LEN, CE_LEN):  # the FLOP count assumes full-length sequences
        raise SystemExit(f"padded widths {widths} differ from {(Q_LEN, P_LEN, CE_LEN)}")
    return batch


def step_flops(shapes: dict, m: int, official: bool) -> float:
    """Forward + backward FLOPs of one step, ~3 x the forward of the three towers."""
    query_rows = QUERIES * m if official else QUERIES
    forward = (shapes["query"].forward_flops([Q_LEN] * query_rows)
               + shapes["passage"].forward_flops([P_LEN] * (QUERIES * m))
               + shapes["cross"].forward_flops([CE_LEN] * (QUERIES * m)))
    return 3 * forward


def time_steps(objective, optimizer, m: int, *, official: bool, warmup: int, steps: int) -> list[float]:
    """Seconds of each timed step: collate, forward, backward, clip, AdamW."""
    examples = make_examples(m)
    forward = (lambda batch: official_forward(objective, batch)) if official else objective
    device = torch.device("cpu")
    params = [p for p in objective.parameters() if p.requires_grad]
    seconds = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        batch = collate(objective, examples, official)
        with autocast(device):
            out = forward(batch)
        out["loss"].float().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds


def row(name: str, seconds: list[float], flops: float, peaks: dict, compute_dtype) -> dict:
    mean = sum(seconds) / len(seconds)
    gflops = flops / mean / 1e9
    return {"way": name, "timed_steps": len(seconds), "seconds_per_step": round(mean, 3),
            "min_seconds": round(min(seconds), 3), "steps_per_s": round(1 / mean, 3),
            "gflop_per_step": round(flops / 1e9, 1), "gflops_per_s": round(gflops, 1),
            "share_of_peak": benchutil.share_of_peak(gflops, peaks, compute_dtype),
            "peak_rss_mb_so_far": round(benchutil.peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", default="8,16,32", help="comma-separated list sizes, run in ascending order")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--no-official", action="store_true", help="skip the query-per-row comparison at m = 8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--path", choices=("kit", "torch", "compile"), default="kit",
                        help="the kit's step (CPU dropout masks, fused AdamW), torch's defaults for both, "
                             "or the towers compiled with fused AdamW")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    peaks = benchutil.matmul_peaks()
    compute_dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    de = DualEncoder.from_backbone("minilm", query_max_length=Q_LEN, passage_max_length=P_LEN)
    ce = CrossEncoder.from_backbone("minilm", max_length=CE_LEN)
    objective = JointDistillation(de, ce).train()
    if args.path == "torch":   # torch's dropout and its default AdamW (a for-loop on CPU)
        torch_dropout(objective)
        optimizer = torch.optim.AdamW(param_groups(objective, 0.01), lr=1e-5)
    else:                      # rqakit.training.make_optimizer: fused AdamW on CPU and CUDA
        optimizer, _ = make_optimizer(objective, OptimSettings(lr=1e-5, weight_decay=0.01), total_steps=1)
    if args.path == "compile":   # fixed shapes here: one graph per tower, no recompilation
        torch_dropout(objective)
        for tower in (de.query_encoder, de.passage_encoder, ce.backbone):
            tower.compile()
    shapes = {"query": benchutil.EncoderShape.of(de.query_encoder),
              "passage": benchutil.EncoderShape.of(de.passage_encoder),
              "cross": benchutil.EncoderShape.of(ce.backbone)}

    results = []
    for m in sorted(int(v) for v in args.m.split(",")):
        ways = [("kit", False)] + ([("official", True)] if m == 8 and not args.no_official else [])
        for name, official in ways:
            started = time.perf_counter()
            seconds = time_steps(objective, optimizer, m, official=official, warmup=args.warmup, steps=args.steps)
            warmup_s = time.perf_counter() - started - sum(seconds)   # compilation, under --path compile
            results.append({"m": m, **row(name, seconds, step_flops(shapes, m, official), peaks, compute_dtype),
                            "warmup_s": round(warmup_s, 1)})

    print(json.dumps({
        "backbone": "minilm",
        "queries": QUERIES,
        "path": args.path,
        "lengths": {"query": Q_LEN, "passage": P_LEN, "cross": CE_LEN},
        "compute_dtype": dtype_name(compute_dtype),
        "matmul_peak_gflops": {k: None if v is None else round(v, 1) for k, v in peaks.items()},
        "results": results,
        "machine": benchutil.machine_state(),
    }))


if __name__ == "__main__":
    main()

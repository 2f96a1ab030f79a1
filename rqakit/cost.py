"""What a profile costs before it runs: tokens and FLOPs of every stage, the FLOP floor at this
machine's matmul peak, and an estimate of the wall time (`rqakit plan`).

    plan(load_config("scifact"))   # {"peak_gflops": ..., "stages": [{stage, tokens, tflop, floor_s, estimate_s, done}], ...}

A transformer of L layers, width h and FFN width f costs about 2·L·(4h² + 2hf) FLOPs per token
forward plus 4·L·n·h for attention over n tokens; a training step costs three forwards (forward +
backward). Token counts come from the config and the data: passage, query and pair lengths are the
mean token counts of a sample of the collection under each max length. The estimate divides each
part's FLOPs by the matmul peak times the share of it that part reaches (`EFFICIENCY`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE = 500   # passages and queries tokenised to measure mean lengths

# Share of the fp32 matmul peak each kind of work reaches, measured with the benchmarks
# (benchmarks/README.md) on a 2-core AVX2 CPU: length-sorted inference near the roof, training
# steps (small micro-batches, backward, optimizer) further below it.
EFFICIENCY = {"encode": 0.8, "score": 0.8, "train": 0.6}


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, *, size: int = 1024, repeats: int = 5) -> float:
    """Best GFLOP/s of torch.matmul on two (size, size) matrices of `dtype`, at torch's thread count."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def flops_per_token(config, seq_len: float) -> float:
    """Forward FLOPs per token of a BERT-like encoder (`config`: a transformers config) at length n."""
    h, f, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2.0 * n_layers * (4 * h * h + 2 * h * f) + 4.0 * n_layers * seq_len * h


@dataclass
class Work:
    """One kind of work of a stage: `tokens` through a model of `seq_len` mean length."""

    kind: str          # encode | score | train
    tokens: float
    seq_len: float
    passes: int = 1    # 3 for training (forward + backward)


@dataclass
class Lengths:
    """Mean token counts of the collection's texts under the profile's max lengths."""

    query: float
    passage: float
    pair: float
    mnrl_passage: float


def measure_lengths(ws) -> Lengths:
    from .models.backbone import load_encoder, resolve_backbone
    from .types import passage_text

    m = ws.cfg.model
    tokenizer = load_encoder(resolve_backbone(m.backbone))[1]
    docs = [doc for _, doc in zip(range(SAMPLE), ws.corpus.iter_docs())]
    queries = list(ws.train.queries.values())[:SAMPLE]

    def mean_len(*texts, max_len):
        return float(np.mean([len(ids) for ids in tokenizer(*texts, truncation=True, max_length=max_len)["input_ids"]]))

    texts = [passage_text(d) for d in docs]
    pair_queries = [queries[i % len(queries)] for i in range(len(texts))]
    return Lengths(query=mean_len(queries, max_len=m.q_max_len), passage=mean_len(texts, max_len=m.p_max_len),
                   pair=mean_len(pair_queries, texts, max_len=m.ce_max_len),
                   mnrl_passage=mean_len(texts, max_len=ws.cfg.st_mnrl.max_length))


def stage_work(ws, lengths: Lengths) -> dict[str, list[Work]]:
    """The work of every stage of the profile's report (joint runs as `ablations.planned_runs`)."""
    from .stages import ablations, joint

    cfg, n_docs = ws.cfg, len(ws.corpus)
    n_train, n_val, n_test = len(ws.train.queries), len(ws.val.queries), len(ws.test.queries)
    q, p, pair = lengths.query, lengths.passage, lengths.pair
    pairs = sum(len(ws.train.positives(qid)) for qid in ws.train.queries)
    de_steps = round(pairs // cfg.warmup_de.batch_queries * cfg.warmup_de.epochs)
    ce = cfg.warmup_ce
    ce_steps = round(n_train // ce.batch_queries * ce.epochs)
    corpus = Work("encode", n_docs * p, p)
    work = {
        "baselines": [Work("encode", 2 * n_docs * p, p), Work("encode", 2 * (n_val + n_test) * q, q)],
        "warmup_de": [Work("train", de_steps * cfg.warmup_de.batch_queries * (q + 2 * p), p, 3), corpus],
        "warmup_ce": [Work("train", ce_steps * ce.batch_queries * ce.list_size * pair, pair, 3),
                      Work("score", 1.5 * n_test * cfg.evaluate.rerank_depth * pair, pair)],
        "augment": [Work("score", n_train * (cfg.augment.score_depth + 1) * pair, pair)],
        "st_mnrl": [Work("train", pairs * cfg.st_mnrl.epochs * (q + 2 * lengths.mnrl_passage), lengths.mnrl_passage, 3),
                    Work("encode", n_docs * lengths.mnrl_passage, lengths.mnrl_passage)],
    }
    n_lists = 2 * n_train   # undenoised + denoised lists
    for spec in ablations.planned_runs(ws):
        j, m, variant = cfg.joint, spec["list_size"], spec["variant"]
        lists = n_lists // 2 if variant == "no-denoise" and cfg.ablations.no_denoise_budget == "epochs" else n_lists
        steps = max(1, round(lists // j.batch_queries * j.epochs)) if lists >= j.batch_queries else 1
        trained = steps * j.batch_queries
        dynamic = variant != "static"
        reads = joint.report_reads(cfg, variant, m, spec["seed"])
        parts = [Work("train", trained * (q + m * p), p, 3), corpus, Work("encode", (n_val + n_test) * q, q)]
        if dynamic:
            parts.append(Work("train", trained * m * pair, pair, 3))
        if reads["rerank"]:   # BM25's candidates too: about half of them are the retriever's, scored once
            share = 1.5 if reads["rerank_bm25"] else 1.0
            parts.append(Work("score", share * n_test * cfg.evaluate.rerank_depth * pair, pair))
        if reads["curves"]:   # both models over a pool of about 20 passages per validation query
            points = steps // j.eval_every + 2
            parts.append(Work("encode", points * n_val * 20 * p, p))
            if dynamic:
                parts.append(Work("score", points * n_val * 20 * pair, pair))
        work[f"joint-{variant}-m{m}-s{spec['seed']}"] = parts
    return work


def plan(cfg, *, peak_gflops: float | None = None) -> dict:
    """Every stage of `cfg`'s report with its tokens, TFLOPs, floor and estimate, and whether it
    is already cached; totals over the stages still to run."""
    from .models.backbone import load_encoder, resolve_backbone
    from .stages import Workspace

    ws = Workspace(cfg)
    peak = peak_gflops or matmul_peak_gflops()
    backbone = load_encoder(resolve_backbone(cfg.model.backbone))[0].config
    rows = []
    for stage, parts in stage_work(ws, measure_lengths(ws)).items():
        flops = sum(w.passes * w.tokens * flops_per_token(backbone, w.seq_len) for w in parts)
        seconds = sum(w.passes * w.tokens * flops_per_token(backbone, w.seq_len) / (peak * 1e9 * EFFICIENCY[w.kind])
                      for w in parts)
        done = (ws.folder(stage) / "manifest.json").exists()
        rows.append({"stage": stage, "done": done, "tokens": int(sum(w.passes * w.tokens for w in parts)),
                     "tflop": round(flops / 1e12, 2), "floor_s": round(flops / (peak * 1e9)),
                     "estimate_s": round(seconds)})
    todo = [r for r in rows if not r["done"]]
    return {"profile": cfg.profile, "peak_gflops": round(peak, 1), "threads": torch.get_num_threads(),
            "stages": rows, "todo_estimate_s": sum(r["estimate_s"] for r in todo),
            "todo_estimate_h": round(sum(r["estimate_s"] for r in todo) / 3600, 2),
            "todo_floor_s": sum(r["floor_s"] for r in todo), "efficiency": EFFICIENCY}

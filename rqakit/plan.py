"""What a profile costs before it runs: tokens and FLOPs of every stage, the FLOP floor at this
machine's matmul peak, and an estimate of the wall time (`rqakit plan`).

    plan(load_config("scifact"))   # {"peak_gflops": ..., "stages": [{stage, tokens, tflop, floor_s, estimate_s, done}], ...}

A transformer of L layers, width h and FFN width f costs about 2·L·(4h² + 2hf) FLOPs per token
forward plus 4·L·n·h for attention over n tokens; a training step costs three forwards (forward +
backward). Token counts come from the config and the data: passage, query and pair lengths are the
mean token counts of a sample of the collection under each max length.

The model's seconds of a stage divide each kind of work's FLOPs by the share of the matmul peak
that kind reaches (`EFFICIENCY`). Where stages of the profile have finished on this machine, the
estimate is the model's seconds times the median, over them, of measured wall time over model
seconds; otherwise the model's seconds plus `OVERHEAD`. Each of 40 finished scifact stages and
study runs, estimated from the other 39 this way, came out at a median 1.00 times its wall time,
45 % of them within 25 % (many ran beside other jobs). Scaling wall times by the share of the cores
a stage had made the estimates 0.56 times the wall time: alone on 2 cores a stage keeps them
busy only part of the time.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SAMPLE = 500   # passages and queries tokenised to measure mean lengths

# Share of the fp32 matmul peak each kind of work reaches, measured with the benchmarks
# (benchmarks/README.md) on a 2-core AVX2 CPU: length-sorted encoding 0.85, the joint training
# step 0.66 to 0.70 (backward, dropout masks and memory-bound layers below the roof), the warm-up
# steps of the scifact run 0.63.
EFFICIENCY = {"encode": 0.85, "score": 0.85, "train": 0.65}
OVERHEAD = 0.05   # seconds outside the modelled work (setup, search, I/O), as a share of it, when nothing is measured


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, *, device: str | torch.device = "cpu",
                       size: int | None = None, repeats: int = 5) -> float:
    """Best GFLOP/s of torch.matmul on two (size, size) matrices of `dtype` on `device` (CPU: at
    torch's thread count, size 1024; GPU: size 8192, synchronised)."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.matmul(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        sync()
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


def max_lengths(cfg) -> Lengths:
    """Every text at its max length: an upper bound, where the data or the tokenizer is not here."""
    m = cfg.model
    return Lengths(query=m.q_max_len, passage=m.p_max_len, pair=m.ce_max_len, mnrl_passage=cfg.st_mnrl.max_length)


@dataclass
class Counts:
    """Documents, the queries of each split, and the labelled (query, positive) pairs of train."""

    docs: int
    train: int
    val: int
    test: int
    train_pairs: int


def data_counts(ws) -> Counts:
    return Counts(docs=len(ws.corpus), train=len(ws.train.queries), val=len(ws.val.queries), test=len(ws.test.queries),
                  train_pairs=sum(len(ws.train.positives(qid)) for qid in ws.train.queries))


def metadata_counts(cfg) -> Counts:
    """The counts `Workspace` would find, from ir_datasets' metadata alone (data not cached): the
    eval split's queries (else `eval_fraction` of train's), `val_fraction` of the rest held out
    (`data.holdout`'s rounding), `max_train_queries`. Training pairs: train's qrels where every
    qrels level is a positive one, else one per query (a lower bound: the qrels also hold
    judged negatives)."""
    from .data.irds import metadata_counts as counts_of

    d = cfg.data
    train = counts_of(d.train)
    n_train = train["queries"]
    if d.eval:
        n_test = counts_of(d.eval)["queries"]
    else:
        n_test = round(d.eval_fraction * n_train)
        n_train -= n_test
    n_val = min(n_train - 1, max(1, round(d.val_fraction * n_train)))
    kept = n_train - n_val
    if d.max_train_queries:
        kept = min(kept, d.max_train_queries)
    pairs = round(train["qrels"] * kept / train["queries"]) if train["positive_levels_only"] else kept
    return Counts(docs=train["docs"], train=kept, val=n_val, test=n_test, train_pairs=pairs)


def measure_lengths(ws) -> Lengths:
    from .models.backbone import load_tokenizer, resolve_backbone
    from .types import passage_text

    m = ws.cfg.model
    tokenizer = load_tokenizer(resolve_backbone(m.backbone))
    docs = [doc for _, doc in zip(range(SAMPLE), ws.corpus.iter_docs())]
    queries = list(ws.train.queries.values())[:SAMPLE]

    def mean_len(*texts, max_len):
        return float(np.mean([len(ids) for ids in tokenizer(*texts, truncation=True, max_length=max_len)["input_ids"]]))

    texts = [passage_text(d) for d in docs]
    pair_queries = [queries[i % len(queries)] for i in range(len(texts))]
    return Lengths(query=mean_len(queries, max_len=m.q_max_len), passage=mean_len(texts, max_len=m.p_max_len),
                   pair=mean_len(pair_queries, texts, max_len=m.ce_max_len),
                   mnrl_passage=mean_len(texts, max_len=ws.cfg.st_mnrl.max_length))


def model_lengths(cfg) -> tuple[int, int, int, int]:
    """The max lengths `Lengths` are measured under."""
    m = cfg.model
    return m.q_max_len, m.p_max_len, m.ce_max_len, cfg.st_mnrl.max_length


def lengths_at(ws) -> tuple[Lengths, str]:
    """(`measure_lengths` under the workspace's own max lengths, "data"); `max_lengths`, an upper
    bound, where the data or the tokenizer is not here, with where it came from."""
    from .data.irds import no_downloads
    from .errors import RqaError

    with no_downloads():
        try:
            return measure_lengths(ws), "data"
        except RqaError:
            return max_lengths(ws.cfg), "max lengths (data or tokenizer not here): an upper bound"


def stage_work(ws, lengths: Lengths, counts: Counts | None = None) -> dict[str, list[Work]]:
    """The work of every stage of the profile's report (joint runs as `ablations.planned_runs`);
    `counts` default to those of the workspace's data."""
    from .stages import ablations, joint

    cfg = ws.cfg
    c = counts or data_counts(ws)
    n_docs, n_train, n_val, n_test, pairs = c.docs, c.train, c.val, c.test, c.train_pairs
    q, p, pair = lengths.query, lengths.passage, lengths.pair
    de_steps = round(pairs // cfg.warmup_de.batch_queries * cfg.warmup_de.epochs)
    ce = cfg.warmup_ce
    ce_steps = round(n_train // ce.batch_queries * ce.epochs)
    corpus = Work("encode", n_docs * p, p)
    work = {
        # one encoding serves both zero-shot readings (search.zero_shot_runs)
        "baselines": [corpus, Work("encode", (n_val + n_test) * q, q)],
        "warmup_de": [Work("train", de_steps * cfg.warmup_de.batch_queries * (q + 2 * p), p, 3), corpus],
        "warmup_ce": [Work("train", ce_steps * ce.batch_queries * ce.list_size * pair, pair, 3),
                      Work("score", 1.5 * n_test * cfg.evaluate.rerank_depth * pair, pair)],
        "augment": [Work("score", n_train * (cfg.augment.score_depth + 1) * pair, pair)],
        "st_mnrl": [Work("train", pairs * cfg.st_mnrl.epochs * (q + 2 * lengths.mnrl_passage), lengths.mnrl_passage, 3),
                    Work("encode", n_docs * lengths.mnrl_passage, lengths.mnrl_passage)],
    }
    for spec in ablations.planned_runs(ws):
        variant, m, seed = spec["variant"], spec["list_size"], spec["seed"]
        work[f"joint-{variant}-m{m}-s{seed}"] = joint_work(cfg, lengths, c, variant, m, joint.report_reads(cfg, variant, m, seed))
    return work


def joint_work(cfg, lengths: Lengths, c: Counts, variant: str, m: int, reads: dict[str, bool]) -> list[Work]:
    """The work of one joint run: its training steps (the re-ranker's too when it learns), the
    corpus and the queries it is evaluated on, and what it evaluates besides (`joint.report_reads`)."""
    j, q, p, pair = cfg.joint, lengths.query, lengths.passage, lengths.pair
    lists = 2 * c.train   # undenoised + denoised lists
    if variant == "no-denoise" and cfg.ablations.no_denoise_budget == "epochs":
        lists //= 2
    steps = max(1, round(lists // j.batch_queries * j.epochs)) if lists >= j.batch_queries else 1
    trained = steps * j.batch_queries
    dynamic = variant != "static"
    parts = [Work("train", trained * (q + m * p), p, 3), Work("encode", c.docs * p, p),
             Work("encode", (c.val + c.test) * q, q)]
    if dynamic:
        parts.append(Work("train", trained * m * pair, pair, 3))
    if reads["rerank"]:   # BM25's candidates too: about half of them are the retriever's, scored once
        share = 1.5 if reads["rerank_bm25"] else 1.0
        parts.append(Work("score", share * c.test * cfg.evaluate.rerank_depth * pair, pair))
    if not dynamic and j.teacher == "joint":   # the trained teacher scores every list row itself
        parts.append(Work("score", lists * m * pair, pair))
    if reads["curves"]:   # both models over a pool of about 20 passages per validation query
        points = steps // j.eval_every + 2
        parts.append(Work("encode", points * c.val * 20 * p, p))
        if dynamic:
            parts.append(Work("score", points * c.val * 20 * pair, pair))
    return parts


def study_work(cfg, lengths: Lengths, counts: Counts, out=None) -> dict[str, tuple[list[Work], Path, bool]]:
    """{name: (work, folder, exported)} of the distillation study (`rqakit.study`): each run it plans,
    named by its run id, and whether it is exported to the study folder (done, whether or not its
    stage folder is still here; a condition whose grid point is not chosen yet counts its later
    seeds at the first point, and a condition chosen from others' results, before its choice, what
    leads so far), and the stages a run needs under its condition's overrides, named "<condition>: <stage>"
    (the dynamic run a trained teacher comes from among them, unless another item trains it).
    A run that reads texts at other lengths than the profile's is costed at its own (`lengths_at`)."""
    from . import study
    from .config import apply_overrides, validate
    from .stages import Workspace, joint

    records = study.read_runs(study.study_dir(cfg.profile, out))
    exported, base = {r["run"] for r in records}, Workspace(cfg)
    work: dict[str, tuple[list[Work], Path, bool]] = {}
    for cond in study.CONDITIONS:
        runs = study.planned(cond, records, provisional=True)
        if cond.grid and study.chosen_point(records, cond) is None:
            runs += study.planned(cond, records, assume=cond.grid[0])
        for arm_name, seed, point, rid in runs:
            if rid in work:
                continue
            arm = cond.arms()[arm_name]
            run_cfg = apply_overrides(copy.deepcopy(cfg), {**arm.overrides, **(point or {})})
            validate(run_cfg)
            ws, m = Workspace(run_cfg), run_cfg.joint.list_size
            own = lengths_at(ws)[0] if model_lengths(run_cfg) != model_lengths(cfg) else lengths
            name = f"joint-{arm.variant}-m{m}-s{seed}"
            reads = study.evaluates(cond, seed, run_cfg) or joint.report_reads(run_cfg, arm.variant, m, seed)
            for stage in joint.NEEDS:   # the stages this condition's overrides rebuild, for a run still to train
                key, folder = f"{cond.key}: {stage}", ws.folder(stage)
                if key not in work and folder != base.folder(stage) and rid not in exported:
                    work[key] = (stage_work(ws, own, counts)[stage], folder, False)
            work[rid] = (joint_work(run_cfg, own, counts, arm.variant, m, reads),
                         ws.folder(name, joint.stage_hash(ws, name, reads)), rid in exported)
            if run_cfg.joint.teacher == "joint" and rid not in exported:
                # the dynamic run it distils from, unless planned already: one exported elsewhere whose
                # folder is gone (a new machine) is trained again for its re-ranker
                j = joint.variant_config(ws, arm.variant, m, seed)
                teacher_ws, teacher_name, teacher_reads = joint.teacher_run(ws, j, reads)
                folder = teacher_ws.folder(teacher_name, joint.stage_hash(teacher_ws, teacher_name, teacher_reads))
                if all(folder != item[1] or item[2] for item in work.values()):
                    work[f"{cond.key}: {teacher_name}"] = (joint_work(teacher_ws.cfg, own, counts, "dynamic", m,
                                                                      teacher_reads), folder, False)
    return work


def busy_warning(threads: int) -> str | None:
    """A line for a peak timed while other jobs ran (1-minute load average above `threads` + 0.5)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):   # no load average on this platform
        return None
    if load <= threads + 0.5:
        return None
    return (f"the matmul peak was timed at load average {load:.1f} on {threads} threads: other jobs share the CPU, "
            "so it and the estimates that fall back on it are low; pass --peak-gflops with a reading of the idle machine")


def model_seconds(parts: list[Work], backbone, peak_gflops: float) -> tuple[float, float]:
    """(FLOPs, seconds at `EFFICIENCY` of the peak) of a stage's work."""
    flops = [w.passes * w.tokens * flops_per_token(backbone, w.seq_len) for w in parts]
    return sum(flops), sum(f / (peak_gflops * 1e9 * EFFICIENCY[w.kind]) for f, w in zip(flops, parts))


def calibration(measured: list[tuple[float, float]]) -> float | None:
    """[(model seconds, measured wall seconds)] of finished stages -> the median of measured over
    model (robust to a stage slowed by other jobs); None when nothing is measured."""
    ratios = [wall / model for model, wall in measured if model > 0]
    return float(np.median(ratios)) if ratios else None


def plan(cfg, *, peak_gflops: float | None = None, study: bool = False) -> dict:
    """Every stage of `cfg`'s report with its tokens, TFLOPs, floor and estimate, and whether it
    is already cached (then its measured time); totals over the stages still to run. `study`: the
    runs the distillation study has left, and the stages they need, too (`study_work`)."""
    from .artifacts import read_manifest
    from .data.irds import no_downloads
    from .errors import RqaError
    from .models.backbone import backbone_shape
    from .runtime import compute_dtype, dtype_name, pick_device
    from .stages import Workspace

    ws = Workspace(cfg).apply()   # the precision and threads the stages would compute with
    device = pick_device(cfg.runtime.device)   # where the stages would run: its precision's peak
    peak = peak_gflops or matmul_peak_gflops(compute_dtype(device), device=device)
    threads = torch.get_num_threads()
    busy = None if peak_gflops or device.type != "cpu" else busy_warning(threads)
    backbone, shape_from = backbone_shape(cfg.model.backbone)
    with no_downloads():   # a plan reads what is here, and never fetches a collection to count it
        try:
            counts, counts_from = data_counts(ws), "data"
        except RqaError:
            counts, counts_from = metadata_counts(cfg), "ir_datasets metadata (data not cached)"
    lengths, lengths_from = lengths_at(ws)
    work = {stage: (parts, ws.folder(stage), False) for stage, parts in stage_work(ws, lengths, counts).items()}
    if study:   # a study run that is one of the report's (power's first seeds) counts once
        folders = {folder for _, folder, _ in work.values()}
        work.update({name: item for name, item in study_work(cfg, lengths, counts).items() if item[1] not in folders})
    modelled = {stage: model_seconds(parts, backbone, peak) for stage, (parts, _, _) in work.items()}
    manifests = {stage: m for stage, (_, folder, _) in work.items() if (m := read_manifest(folder)) is not None}
    measured = [stage for stage, m in manifests.items() if m.get("wall_time_s")]
    factor = calibration([(modelled[stage][1], manifests[stage]["wall_time_s"]) for stage in measured])
    rows = []
    for stage, (parts, _, exported) in work.items():
        flops, seconds = modelled[stage]
        row = {"stage": stage, "done": stage in manifests or exported,
               "tokens": int(sum(w.passes * w.tokens for w in parts)), "tflop": round(flops / 1e12, 2),
               "floor_s": round(flops / (peak * 1e9)),
               "estimate_s": round(seconds * (factor if factor else 1.0 + OVERHEAD))}
        if stage in measured:
            row["measured_s"] = round(manifests[stage]["wall_time_s"])
            row["cpu_share"] = manifests[stage].get("cpu_share")   # below 1: measured while other jobs ran
        rows.append(row)
    todo = [r for r in rows if not r["done"]]
    return {"profile": cfg.profile, "device": str(device), "compute_dtype": dtype_name(compute_dtype(device)),
            "peak_gflops": round(peak, 1), "peak_from": "given" if peak_gflops else "timed",
            **({"warning": busy} if busy else {}), "threads": threads,
            "counts": {**counts.__dict__, "from": counts_from},
            "lengths": {**lengths.__dict__, "from": lengths_from}, "backbone_shape_from": shape_from,
            "stages": rows, "todo_estimate_s": sum(r["estimate_s"] for r in todo),
            "todo_estimate_h": round(sum(r["estimate_s"] for r in todo) / 3600, 2),
            "todo_floor_s": sum(r["floor_s"] for r in todo),
            "calibration": None if factor is None else round(factor, 3), "calibrated_from": measured,
            "efficiency": EFFICIENCY}

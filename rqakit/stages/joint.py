"""Stage `joint`: RocketQAv2's dynamic listwise distillation and its Table 4 / Figure 4 variants.

Both models start from the warm-up stages and read the lists of `augment`:

| variant      | what changes (Table 4)                                                     |
|--------------|-----------------------------------------------------------------------------|
| dynamic      | both towers train: L_sup for the re-ranker + L_KL for the retriever (Eq. 6) |
| static       | the re-ranker is a frozen teacher; its scores are computed once and reused   |
| pointwise    | the re-ranker trains with per-pair BCE; the KL still uses its list softmax   |
| no-denoise   | undenoised lists only, for as many optimizer steps as the run on all lists   |
|              | (`ablations.no_denoise_budget: steps`; `epochs`: same epochs, ~half the steps) |

The static teacher is the warm re-ranker; `joint.teacher: joint` puts in its place the re-ranker
of the dynamic run with the same settings and seed, after its last step (a better teacher that no
longer moves), and that run's hash enters the static run's.

A folder per (variant, m, seed): `retriever/`, `reranker/` (dynamic variants), `history.json`,
`curves.json` (both models on the validation slice every `joint.eval_every` steps: mutual
improvement, seen), `metrics.json` (test retrieval and re-ranking: `reranker` on the run's own
retriever, `reranker@bm25` on BM25) and the runs.

A run evaluates what the report reads of it and nothing more (`report_reads`): every run its
retriever on test; the dynamic runs also their re-ranker on the retriever's test top candidates
(Table 3, Figure 4) and, at the main list size, on BM25's (Table 3); only the first seed of
dynamic and static at the main list size draws the validation curves (the mutual-improvement
figure). Neither choice touches training: evaluation runs in eval mode and draws no random numbers.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..config import plain
from ..encode import encode_passages, encode_queries, score_pairs
from ..errors import RqaError
from ..mining import TrainingLists, training_lists
from ..models import CrossEncoder, DualEncoder
from ..objectives import JointDistillation, ListExample
from ..rerank import ScoreCache, rerank
from ..runtime import first_rank
from ..search import dense_retrieve
from ..training import OptimSettings, TrainingStopped
from .common import fit, load_run, make_plan, metrics_of, ranked_ids, save_run, write_json
from .workspace import SPLITS, Workspace

VARIANTS = ("dynamic", "static", "pointwise", "no-denoise")
NEEDS = ("baselines", "warmup_de", "warmup_ce", "augment")
READS = (*SPLITS, "joint", "evaluate.retrieve_depth", "evaluate.rerank_depth", "evaluate.measures",
         "evaluate.relevance")


def variant_config(ws: Workspace, variant: str, list_size: int | None, seed: int | None):
    """The `joint` section with the variant's switch, list size and seed applied."""
    if variant not in VARIANTS:
        raise RqaError(f"unknown joint variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    j = dataclasses.replace(plain(ws.cfg.joint))
    if variant == "static":
        j.mode = "static"
    elif variant == "pointwise":
        j.ce_loss = "pointwise"
    elif variant == "no-denoise":
        j.use_denoised = False
    if list_size:
        j.list_size = list_size
    if seed is not None:
        j.seed = seed
    if j.teacher_dropout and j.mode != "static":
        raise RqaError("joint.teacher_dropout reads a frozen teacher in train mode: it applies to the static "
                       "variant only (rqakit stage joint:static)")
    if j.teacher != "warm" and j.mode != "static":
        raise RqaError("joint.teacher chooses the frozen teacher of the static variant: set it with "
                       "rqakit stage joint:static only")
    return j


def teacher_run(ws: Workspace, j, evaluates: dict[str, bool] | None) -> tuple[Workspace, str, dict[str, bool]]:
    """The dynamic run whose last re-ranker a `joint.teacher: joint` static run distils from:
    (its Workspace, its run name, what it evaluates). It has the static run's settings and seed
    in the dynamic variant and evaluates as `evaluates` (a study's runs) or as the report reads a
    dynamic run, so it is the run the static one pairs with, trained once for both."""
    joint_section = dataclasses.replace(ws.config.joint, mode="dynamic", teacher="warm", teacher_dropout=False)
    teacher_ws = Workspace(dataclasses.replace(ws.config, joint=joint_section), root=ws.root, kernels=ws.kernels)
    reads = evaluates or report_reads(teacher_ws.config, "dynamic", j.list_size, j.seed)
    return teacher_ws, folder_name("dynamic", j.list_size, j.seed), reads


def matched_epochs(n_reference: int, n_lists: int, batch_queries: int, epochs: float) -> float:
    """Epochs over `n_lists` lists that take as many optimizer steps as `epochs` over `n_reference`
    (the no-denoise ablation against the run on all lists; `make_plan` counts steps the same way)."""
    ref_batch, batch = min(batch_queries, n_reference), min(batch_queries, n_lists)
    reference_steps = max(1, int(round((n_reference // ref_batch) * epochs)))
    return reference_steps / (n_lists // batch)


def folder_name(variant: str, list_size: int, seed: int) -> str:
    return f"joint-{variant}-m{list_size}-s{seed}"


def report_reads(cfg, variant: str, list_size: int, seed: int) -> dict[str, bool]:
    """What the report reads of the joint run (variant, m, seed), so what it evaluates besides its
    retriever: `curves`, validation curves every `joint.eval_every` steps (the first seed of dynamic
    and static at `joint.list_size`); `rerank`, its re-ranker on its retriever's test top candidates
    (dynamic: Table 3 and the list-size figure; static keeps the warm re-ranker, pointwise and
    no-denoise appear in Table 4 through their retrievers only); `rerank_bm25`, the same re-ranker
    on BM25's top candidates (Table 3, dynamic at `joint.list_size`)."""
    main = list_size == cfg.joint.list_size
    return {"curves": bool(cfg.joint.eval_every) and main and seed == cfg.ablations.seeds[0]
            and variant in ("dynamic", "static"),
            "rerank": variant == "dynamic", "rerank_bm25": variant == "dynamic" and main}


def stage_hash(ws: Workspace, name: str, evaluates: dict[str, bool] | None = None) -> str:
    """Config hash of the joint run `name` ("joint-static-m8-s2"): READS with the variant's joint
    section in place of the profile's, the stages it needs, and what it evaluates (`report_reads`:
    the hash covers the choice, not the report layout it follows from; `evaluates` in its place for
    a run read by something else, the study)."""
    found = re.fullmatch(r"joint-(.+)-m(\d+)-s(-?\d+)", name)
    if not found:
        raise RqaError(f"{name!r} is not a joint run name (joint-VARIANT-mM-sSEED)")
    variant, list_size, seed = found.group(1), int(found.group(2)), int(found.group(3))
    extra = {"variant": variant, **(evaluates or report_reads(ws.config, variant, list_size, seed))}
    if variant == "no-denoise":  # how many steps it trains (ablations.no_denoise_budget)
        extra["no_denoise_budget"] = ws.cfg.ablations.no_denoise_budget
    j = variant_config(ws, variant, list_size, seed)
    if j.teacher == "joint":     # the dynamic run whose re-ranker it distils from
        extra["teacher"] = stage_hash(*teacher_run(ws, j, evaluates))
    return ws.hash("joint", extra=extra, sections={"joint": j})


class ListExamples(Sequence):
    """The training lists as `ListExample`s, each list's passages fetched when a step reads it:
    MS MARCO's 1.0M lists of 128 would hold 128.5M `Doc`s at once (41 to 82 GB per process)."""

    def __init__(self, ws: Workspace, lists: TrainingLists, teacher: np.ndarray | None):
        self.queries, self.corpus, self.lists, self.teacher = ws.train.queries, ws.corpus, lists, teacher

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, i: int) -> ListExample:
        return ListExample(self.queries[self.lists.query_ids[i]], self.corpus.get_many(self.lists.docs(i)),
                           None if self.teacher is None else self.teacher[i].tolist())


def teacher_scores(lists: TrainingLists, ws: Workspace, ce: CrossEncoder, batch_size: int) -> np.ndarray:
    """Static teacher: the warm CE's logits for every list row, (n, m), reusing augment's scores and
    scoring only the rows it left unscored (fallback negatives)."""
    rows = lists.ce_scores.copy()
    missing = np.argwhere(np.isnan(rows))
    if len(missing):
        values = score_pairs(ce, [ws.train.queries[lists.query_ids[i]] for i, _ in missing],
                             ws.corpus.get_many([lists.doc_ids[lists.doc_index[i, j]] for i, j in missing]),
                             batch_size=batch_size)
        rows[missing[:, 0], missing[:, 1]] = values
    return rows


def unscored(lists: TrainingLists) -> TrainingLists:
    """The lists with every row's score cleared, so that `teacher_scores` scores them all with the
    re-ranker it is given (augment's scores are the warm one's)."""
    return dataclasses.replace(lists, ce_scores=np.full_like(lists.ce_scores, np.nan))


def curve_evaluator(ws: Workspace, de: DualEncoder, ce: CrossEncoder | None, pools: dict[str, list[str]], batch_size: int):
    """Both models on the validation slice: each ranks a fixed candidate pool per query (BM25 and
    warm-retriever top candidates), nDCG@10 and RR@10 of the pool ranking. Cheap enough to repeat."""
    measures, relevance = ["nDCG@10", "RR@10"], ws.cfg.evaluate.relevance
    qids = [q for q in sorted(pools) if pools[q]]
    flat = [(q, d) for q in qids for d in pools[q]]
    docs = ws.corpus.get_many([d for _, d in flat])
    texts = [ws.val.queries[q] for q, _ in flat]

    def evaluate(step: int) -> dict:
        q_emb = encode_queries(de, [ws.val.queries[q] for q in qids], batch_size=batch_size, progress=False)
        p_emb = encode_passages(de, docs, batch_size=batch_size, progress=False)
        row = dict(zip(qids, q_emb))
        de_run: dict = {}
        for (q, d), p in zip(flat, p_emb):
            de_run.setdefault(q, {})[d] = float(row[q] @ p)
        out = {f"retriever_{k}": v for k, v in metrics_of(de_run, ws.val, measures, ws.corpus, relevance).items()}
        if ce is not None:
            scores = score_pairs(ce, texts, docs, batch_size=batch_size, progress=False)
            ce_run: dict = {}
            for (q, d), s in zip(flat, scores):
                ce_run.setdefault(q, {})[d] = float(s)
            ce_metrics = metrics_of(ce_run, ws.val, measures, ws.corpus, relevance)
            out.update({f"reranker_{k}": v for k, v in ce_metrics.items()})
        return out

    return evaluate


def run(ws: Workspace, variant: str = "dynamic", *, list_size: int | None = None, seed: int | None = None,
        evaluates: dict[str, bool] | None = None, force: bool = False, stop_after: int | None = None,
        log=print) -> Path:
    """Train and evaluate the joint run (variant, m, seed) on the cached earlier stages.

    `evaluates` ({"curves", "rerank", "rerank_bm25"}) replaces `report_reads` for a run that
    something other than the report reads; it enters the run's hash the same way."""
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes

    cfg = ws.cfg
    j = variant_config(ws, variant, list_size, seed)
    base, wde, wce, aug = ws.upstream("joint", log).values()
    name = folder_name(variant, j.list_size, j.seed)
    cfg_hash = stage_hash(ws, name, evaluates)
    folder = ws.folder(name, cfg_hash)
    budget = ws.cfg.ablations.no_denoise_budget if variant == "no-denoise" else None
    reads = evaluates or report_reads(ws.config, variant, j.list_size, j.seed)

    def build(tmp: Path) -> dict:
        lists = training_lists(aug / "lists.parquet", use_denoised=j.use_denoised, list_size=j.list_size)
        reranker_start = wce / "model"   # the warm re-ranker: both arms start from it or distil from it
        if j.teacher == "joint":  # augment's scores are the warm re-ranker's: the trained one scores every row
            teacher_ws, _, teacher_reads = teacher_run(ws, j, evaluates)
            reranker_start = run(teacher_ws, "dynamic", list_size=j.list_size, seed=j.seed, evaluates=teacher_reads,
                                 log=log) / "reranker"
            lists = unscored(lists)
        epochs = j.epochs
        if budget == "steps":  # w/o denoised: the steps of the run on all lists, not half of them
            n_all = pq.ParquetFile(aug / "lists.parquet").metadata.num_rows
            epochs = matched_epochs(n_all, len(lists), j.batch_queries, j.epochs)
        de = DualEncoder.from_pretrained(wde / "model").train()
        ce = CrossEncoder.from_pretrained(reranker_start)
        batch_size = cfg.evaluate.batch_size
        fixed_teacher = j.mode == "static" and not j.teacher_dropout
        examples = ListExamples(ws, lists, teacher_scores(lists, ws, ce, batch_size) if fixed_teacher else None)
        if j.mode != "static":
            ce.train()
        objective = JointDistillation(de, ce, static=j.mode == "static", ce_loss=j.ce_loss, kl_direction=j.kl_direction,
                                      kl_grad_to_ce=j.kl_grad_to_ce, kl_reduction=j.kl_reduction, in_batch=j.in_batch,
                                      teacher_dropout=j.teacher_dropout, teacher_temperature=j.teacher_temperature)
        ce_own = {k: v for k, v in (("lr", j.ce_lr), ("warmup_ratio", j.ce_warmup_ratio or None)) if v is not None}
        plan = make_plan(len(examples), batch_size=min(j.batch_queries, len(examples)),
                         micro_batch_size=j.micro_batch_queries, epochs=epochs, seed=j.seed)
        evaluator = None
        if reads["curves"]:
            bm25_val, wde_val = load_run(base, "bm25.val"), load_run(wde, "warmup_de.val")
            pools = {q: list(dict.fromkeys(ranked_ids(bm25_val, q, 10) + ranked_ids(wde_val, q, 10)))
                     for q in ws.val.queries}
            evaluator = curve_evaluator(ws, de, None if j.mode == "static" else ce, pools, batch_size)
        result = fit(objective, examples, plan, ws=ws, section=j, folder=folder, desc=name, log=log,
                     optim=OptimSettings(lr=j.lr, weight_decay=j.weight_decay, warmup_ratio=0.0,
                                         schedule="constant", clip=j.clip, clip_per_tower=j.clip_per_tower,
                                         towers={"ce": ce_own} if ce_own and j.mode != "static" else {}),
                     stop_after=stop_after, eval_fn=evaluator, eval_every=j.eval_every)
        if stop_after is not None and result.resumed_from + result.steps < len(plan):
            raise TrainingStopped(f"{name} stopped after step {stop_after}; run it again to resume")
        if not first_rank():   # rank 0 alone evaluates and publishes (artifacts.run_stage)
            return {}
        de.eval().save_pretrained(tmp / "retriever")
        reranker = ce.eval()
        if j.mode != "static":
            reranker.save_pretrained(tmp / "reranker")
        depth, measures, relevance = cfg.evaluate.retrieve_depth, cfg.evaluate.measures, cfg.evaluate.relevance
        runs = dense_retrieve(de, ws.corpus, {"val": ws.val.queries, "test": ws.test.queries}, depth,
                              batch_size=batch_size)
        for split_name, r in runs.items():
            save_run(tmp, f"retriever.{split_name}", r)
        metrics = {"retriever": metrics_of(runs["test"], ws.test, measures, ws.corpus, relevance)}
        shared = ScoreCache()  # the two candidate sets share many (query, doc) pairs: score each once
        for key, wanted, source in (("reranker", reads["rerank"], lambda: runs["test"]),
                                    ("reranker@bm25", reads["rerank_bm25"], lambda: load_run(base, "bm25.test"))):
            if wanted:
                reranked = rerank(reranker, source(), ws.test.queries, ws.corpus, top_n=cfg.evaluate.rerank_depth,
                                  batch_size=batch_size, cache=shared)
                save_run(tmp, f"{key.replace('@', '.')}.test", reranked)
                metrics[key] = metrics_of(reranked, ws.test, measures, ws.corpus, relevance)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", result.history)
        if reads["curves"]:
            write_json(tmp / "curves.json", result.evals)
        step_s = [h["seconds"] for h in result.history]
        log(f"[{name}] {len(examples)} lists, {result.steps} steps, test {metrics}")
        return {"metrics": metrics, "variant": variant, "list_size": j.list_size, "seed": j.seed, "lists": len(examples),
                "steps": len(result.history), "epochs": epochs, "evaluated": reads,
                "mean_step_s": float(np.mean(step_s)) if step_s else None,
                "train_wall_time_s": result.wall_time_s, "steps_s": round(result.steps_seconds, 3)}

    return ws.build(folder, cfg_hash, build, force=force, log=log)

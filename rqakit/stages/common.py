"""What the stages share: runs on disk and their metrics, the first-stage runs of earlier stages
searched at the depth a later stage needs, and one call that trains a stage's objective."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..artifacts import work_dir
from ..atomic import write_json  # noqa: F401  (the stages' one JSON writer)
from ..evaluation import evaluate_split, passage_texts, per_query_split, relevance_mode
from ..runs import Run, ranked, write_trec_run
from ..runtime import pick_device
from ..stage_folder import StageFolder
from ..training import OptimSettings, TrainResult, make_plan, train


def save_run(folder: Path, name: str, run: Run) -> Path:
    """Write `runs/<name>.trec` of a stage folder being built (read back by `StageFolder.run`)."""
    path = StageFolder(folder).run_path(name)
    write_trec_run(run, path)
    return path


def load_run(folder: Path, name: str) -> Run:
    return StageFolder(folder).run(name)


def answer_bearing(ws, candidates: dict[str, list[str]]) -> dict[str, set[str]] | None:
    """Per training query, the candidates that contain a gold answer (DPR has_answer): never
    negatives. None when the training split has no answers or `data.answer_free_negatives` is off."""
    from ..mining import answer_bearing as find_answer_bearing

    if not (ws.cfg.data.answer_free_negatives and ws.train.answers):
        return None
    return find_answer_bearing(candidates, ws.train.answers, passage_texts(ws.corpus))


def metrics_of(run: Run, split, measures, corpus=None, relevance: str = "auto") -> dict:
    """Mean of each measure on `split`: by its answers when it has them (NQ; `evaluate.relevance`),
    which needs the corpus, else by its qrels."""
    texts = passage_texts(corpus) if corpus is not None else None
    return {k: float(v) for k, v in evaluate_split(run, split, list(measures), texts, relevance).items()}


def split_scorer(ws, split, per_query_values: bool = False):
    """`score(run, measures)` on `split` as the stages score it: by its answers where it has them
    (NQ, `evaluate.relevance`), else by its qrels; means, or the per-query frame."""
    relevance = ws.cfg.evaluate.relevance
    texts, cache = None, {}
    if relevance_mode(split, relevance) == "answers":
        texts = passage_texts(ws.corpus)
    scorer = per_query_split if per_query_values else evaluate_split
    return lambda run, measures: scorer(run, split, measures, texts, relevance, cache)


def ranked_ids(run: Run, qid: str, k: int | None = None) -> list[str]:
    """One query's doc ids by score (ties by id, as `runs.ranked`), the first k."""
    return [d for d, _ in ranked(run.get(qid, {}))[:k]]


def bm25_run(baselines_folder: Path, queries: dict[str, str], depth: int) -> Run:
    """BM25's top `depth` for `queries`, from the index the `baselines` stage saved."""
    from ..search import BM25Index

    return BM25Index.load(Path(baselines_folder) / "bm25_index").search(queries, depth)


def warm_retriever_run(warmup_de_folder: Path, queries: dict[str, str], depth: int, batch_size: int = 64) -> Run:
    """The warm retriever's top `depth` for `queries`, against the corpus embeddings `warmup_de`
    saved (only the queries are encoded)."""
    from ..encode import EmbeddingShards, encode_queries
    from ..models import DualEncoder
    from ..search import dense_search

    folder = Path(warmup_de_folder)
    de = DualEncoder.from_pretrained(folder / "model")
    qids = list(queries)
    q_emb = encode_queries(de, [queries[q] for q in qids], batch_size=batch_size, progress=False)
    return dense_search(q_emb, EmbeddingShards(folder / "corpus_emb"), depth, query_ids=qids)


def fit(objective, examples: Sequence, plan: list[list[list[int]]], *, optim: OptimSettings, section, ws,
        folder: Path, desc: str, log: Callable = print, checkpoints: str = "ckpt", **options) -> TrainResult:
    """Train `objective` on `plan` (example indices per micro-batch per step), checkpointing in the
    stage's work folder (`checkpoints` under it) every `section.checkpoint_every` steps and seeding
    from `section.seed`."""
    batches = [[[examples[i] for i in micro] for micro in step] for step in plan]
    return train(objective, batches, objective.collate, optim=optim, device=pick_device(ws.config.runtime.device),
                 checkpoint_dir=work_dir(folder) / checkpoints, checkpoint_every=section.checkpoint_every,
                 desc=desc, seed=section.seed, log=log, **options)


__all__ = ["bm25_run", "fit", "load_run", "make_plan", "metrics_of", "ranked_ids", "save_run", "split_scorer",
           "warm_retriever_run",
           "write_json"]

"""What the stages share: runs on disk and their metrics, the first-stage runs of earlier stages
searched at the depth a later stage needs, and one call that trains a stage's objective."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..artifacts import wait_until, work_dir
from ..atomic import write_json  # noqa: F401  (the stages' one JSON writer)
from ..evaluation import evaluate_split, passage_texts, per_query_split, relevance_mode
from ..runs import Run, ranked, read_ranking, write_ranking, write_trec_run
from ..runtime import all_cores, pick_device, world
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


SEARCH_CHUNK = 20_000   # queries searched at a time where only their ranked ids are kept


def top_ids(search: Callable[[dict[str, str]], Run], queries: dict[str, str], depth: int) -> dict[str, list[str]]:
    """Each query's top `depth` doc ids (`ranked_ids` order) from `search(queries) -> Run`, called on
    `SEARCH_CHUNK` queries at a time: only the ids are kept, never the run of a whole split (MS
    MARCO's 500k training queries at depth 1,000 are 5 x 10^8 scores, about 45 GB as dicts)."""
    qids, out = list(queries), {}
    for start in range(0, len(qids), SEARCH_CHUNK):
        chunk = {q: queries[q] for q in qids[start:start + SEARCH_CHUNK]}
        run = search(chunk)
        out.update({q: ranked_ids(run, q, depth) for q in chunk})
    return out


def bm25_ranking(baselines_folder: Path, queries: dict[str, str], depth: int) -> dict[str, list[str]]:
    """BM25's top `depth` doc ids per query, from the index the `baselines` stage saved."""
    from ..search import BM25Index

    index = BM25Index.load(Path(baselines_folder) / "bm25_index")
    return top_ids(lambda chunk: index.search(chunk, depth), queries, depth)


def warm_retriever_ranking(warmup_de_folder: Path, queries: dict[str, str], depth: int,
                           batch_size: int = 64) -> dict[str, list[str]]:
    """The warm retriever's top `depth` doc ids per query, against the corpus embeddings `warmup_de`
    saved (only the queries are encoded)."""
    from ..encode import EmbeddingShards, encode_queries
    from ..models import DualEncoder
    from ..search import dense_search

    folder = Path(warmup_de_folder)
    de, shards = DualEncoder.from_pretrained(folder / "model"), EmbeddingShards(folder / "corpus_emb")

    def search(chunk: dict[str, str]) -> Run:
        q_emb = encode_queries(de, list(chunk.values()), batch_size=batch_size, progress=False)
        return dense_search(q_emb, shards, depth, query_ids=list(chunk))

    return top_ids(search, queries, depth)


def shared_ranking(path: Path, compute: Callable[[], dict[str, list[str]]]) -> dict[str, list[str]]:
    """`compute()` once per torchrun job: rank 0 computes it on every core (the other processes only
    wait) and writes it to `path`, in the stage's work folder, where the others read it; a killed
    attempt's file is reused. One process just computes."""
    rank, world_size = world()
    if world_size == 1:
        return compute()
    if path.exists():
        return read_ranking(path)
    if rank != 0:
        wait_until(path.exists)
        return read_ranking(path)
    with all_cores():
        ranking = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ranking(ranking, path)
    return ranking


class PlannedSteps(Sequence):
    """`plan` (example indices per micro-batch per step) as the examples themselves, looked up when
    training reads a step: a lazy `examples` sequence is then read one step at a time."""

    def __init__(self, examples: Sequence, plan: list[list[list[int]]]):
        self.examples, self.plan = examples, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, step: int) -> list[list]:
        return [[self.examples[i] for i in micro] for micro in self.plan[step]]


def fit(objective, examples: Sequence, plan: list[list[list[int]]], *, optim: OptimSettings, section, ws,
        folder: Path, desc: str, log: Callable = print, checkpoints: str = "ckpt", **options) -> TrainResult:
    """Train `objective` on `plan` (example indices per micro-batch per step), checkpointing in the
    stage's work folder (`checkpoints` under it) every `section.checkpoint_every` steps and seeding
    from `section.seed`."""
    return train(objective, PlannedSteps(examples, plan), objective.collate, optim=optim,
                 device=pick_device(ws.config.runtime.device), checkpoint_dir=work_dir(folder) / checkpoints,
                 checkpoint_every=section.checkpoint_every, desc=desc, seed=section.seed, log=log, **options)


__all__ = ["bm25_ranking", "fit", "load_run", "make_plan", "metrics_of", "ranked_ids", "save_run", "split_scorer",
           "shared_ranking", "top_ids", "warm_retriever_ranking", "write_json"]

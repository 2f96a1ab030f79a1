"""Small helpers the stages share: runs on disk, metrics of a run, optimizer settings."""
from __future__ import annotations

import json
from pathlib import Path

from ..evaluation import evaluate_split
from ..search import Run, ranked, read_trec_run, write_trec_run


def save_run(folder: Path, name: str, run: Run) -> Path:
    path = Path(folder) / "runs" / f"{name}.trec"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, path)
    return path


def load_run(folder: Path, name: str) -> Run:
    path = Path(folder) / "runs" / f"{name}.trec"
    return read_trec_run(path)


def passage_texts(corpus):
    """doc ids -> passage texts without titles (what DPR's has_answer reads), for answer scoring."""
    return lambda doc_ids: [doc.text for doc in corpus.get_many(doc_ids)]


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


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True, default=float))


def ranked_ids(run: Run, qid: str, k: int | None = None) -> list[str]:
    """One query's doc ids by score (ties by id, as `search.ranked`), the first k."""
    return [d for d, _ in ranked(run.get(qid, {}))[:k]]

"""Load a corpus and query splits by ir_datasets ID; split one query set deterministically.

Any ID that ir_datasets knows works: public collections (`beir/scifact/train`,
`msmarco-passage/dev/small`, `dpr-w100/natural-questions/dev`), the built-in `rqakit/toy/...`,
and local files registered as `local/<name>` (rqakit.data.local).
"""
from __future__ import annotations

import random

from rqakit.data.collection import Corpus, Split
from rqakit.data.irds import child_ids, open_dataset, reading
from rqakit.errors import RqaError


def load_corpus(dataset_id: str, use_titles: bool = True) -> Corpus:
    """The documents of `dataset_id`, streamed (see `Corpus`)."""
    return Corpus(dataset_id, use_titles=use_titles)


def _query_text(query) -> str:
    """`.text` (BEIR, MS MARCO, dpr-w100), else the first text field (TREC `title`)."""
    text = getattr(query, "text", None)
    if isinstance(text, str):
        return text
    return next((v for v in query[1:] if isinstance(v, str)), "")


def _no_qrels_message(dataset_id: str) -> str:
    children = child_ids(dataset_id)
    hint = f"use one of its splits with judgements: {', '.join(children)}" if children else "pick a split with judgements"
    return f"dataset '{dataset_id}' has no qrels (relevance judgements) to score against; {hint}"


def load_split(dataset_id: str, require_qrels: bool = True, name: str = "") -> Split:
    """Queries, graded qrels (ints) and, for dpr-w100 QA sets, answer strings of `dataset_id`.

    `name` defaults to the last part of the ID ("train", "test", "small", ...).
    """
    dataset = open_dataset(dataset_id)
    if not dataset.has_queries():
        raise RqaError(f"dataset '{dataset_id}' has no queries; pick a query split such as "
                       f"{', '.join(child_ids(dataset_id)) or dataset_id + '/test'}")
    if require_qrels and not dataset.has_qrels():
        raise RqaError(_no_qrels_message(dataset_id))
    with reading(dataset_id):
        records = list(dataset.queries_iter())
        qrels: dict[str, dict[str, int]] = {}
        for qrel in dataset.qrels_iter() if dataset.has_qrels() else ():
            qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    has_answers = "answers" in dataset.queries_cls()._fields
    annotations = dataset.qrels_annotations() if hasattr(dataset, "qrels_annotations") else {}
    return Split(
        dataset_id=dataset_id,
        queries={q.query_id: _query_text(q) for q in records},
        qrels=qrels,
        answers={q.query_id: list(q.answers) for q in records} if has_answers else None,
        name=name or dataset_id.rsplit("/", 1)[-1],
        annotations={kind: {q: sorted(docs) for q, docs in table.items()} for kind, table in annotations.items()},
    )


def holdout(split: Split, fraction: float, seed: int = 0, *, name: str = "val") -> tuple[Split, Split]:
    """(rest, heldout): sort the query ids, shuffle with `random.Random(seed)`, hold out the first
    round(fraction * n) of them (at least 1, at most n - 1). Same split, seed, fraction -> same ids."""
    if not 0 < fraction < 1:
        raise RqaError(f"holdout fraction must be between 0 and 1 (exclusive), got {fraction}")
    qids = sorted(split.queries)
    if len(qids) < 2:
        raise RqaError(f"split '{split.name}' of {split.dataset_id} has {len(qids)} queries; holding out needs at least 2")
    random.Random(seed).shuffle(qids)
    n_held = min(len(qids) - 1, max(1, round(fraction * len(qids))))
    held = set(qids[:n_held])
    rest = split.subset([q for q in split.queries if q not in held])
    return rest, split.subset([q for q in split.queries if q in held], name=name)


def train_eval_splits(train_id: str, eval_id: str | None = None, *, eval_fraction: float = 0.2,
                      seed: int = 0) -> tuple[Split, Split]:
    """(train, eval) splits named "train" and "eval". With `eval_id` None, the eval queries are a
    deterministic `holdout` of the train dataset's queries, so one query set is enough."""
    train = load_split(train_id, require_qrels=True, name="train")
    if eval_id is not None:
        return train, load_split(eval_id, require_qrels=True, name="eval")
    return holdout(train, eval_fraction, seed, name="eval")


def dataset_stats(dataset_id: str) -> dict:
    """Counts for `rqakit data stats ID`: docs, queries, qrels, and queries with a positive (rel > 0)."""
    dataset = open_dataset(dataset_id)
    stats = {"dataset": dataset_id, "docs": 0, "queries": 0, "qrels": 0, "queries_with_positive": 0}
    if dataset.has_docs():
        stats["docs"] = len(Corpus(dataset_id))
    with reading(dataset_id):
        if dataset.has_queries():
            stats["queries"] = sum(1 for _ in dataset.queries_iter())
        if dataset.has_qrels():
            positive = set()
            for qrel in dataset.qrels_iter():
                stats["qrels"] += 1
                if qrel.relevance > 0:
                    positive.add(qrel.query_id)
            stats["queries_with_positive"] = len(positive)
    return stats

"""Small tables the notebooks show: splits, corpus, an example query, metrics, lists.

Every function reads what a stage wrote (or the data) and returns a pandas DataFrame or a dict;
nothing here trains or writes.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..stage_folder import StageFolder

CORPUS_SAMPLE = 10_000   # passages read for the length statistics (the corpus is streamed)


def read_metrics(folder: str | Path) -> dict:
    """A stage folder's metrics.json: {system: {measure: value}}."""
    return StageFolder(folder).metrics


def metrics_table(metrics: dict, measures=None, digits: int = 3) -> pd.DataFrame:
    """{system: {measure: value}} -> one row per system, one column per measure (in `measures` order)."""
    frame = pd.DataFrame.from_dict(metrics, orient="index").rename_axis("system")
    if measures:
        frame = frame[[m for m in measures if m in frame.columns]]
    return frame.round(digits)


def split_table(ws) -> pd.DataFrame:
    """Queries, judged queries, qrels and positives per query of train, validation and test."""
    rows = []
    for name, split in (("train", ws.train), ("validation (held out of train)", ws.val), ("test", ws.test)):
        grades = [g for docs in split.qrels.values() for g in docs.values()]
        positives = [sum(g > 0 for g in docs.values()) for docs in split.qrels.values()]
        rows.append({"split": name, "dataset": split.dataset_id, "queries": len(split.queries),
                     "judged queries": sum(p > 0 for p in positives), "qrels": len(grades),
                     "positives per query": round(float(np.mean(positives)), 2) if positives else 0.0,
                     "grades": dict(sorted(pd.Series(grades).value_counts().to_dict().items())) if grades else {}})
    return pd.DataFrame(rows)


def corpus_table(ws, sample: int = CORPUS_SAMPLE) -> pd.DataFrame:
    """Passage count, and from the first `sample` passages: words per passage and titles."""
    docs = list(itertools.islice(ws.corpus.iter_docs(), sample))
    words = np.array([len(ws.corpus.passage_text(d).split()) for d in docs])
    return pd.DataFrame([{"passages": len(ws.corpus), "sampled": len(docs),
                          "words per passage (mean)": round(float(words.mean()), 1) if len(words) else 0.0,
                          "words per passage (max)": int(words.max()) if len(words) else 0,
                          "with a title": f"{np.mean([bool(d.title) for d in docs]):.0%}" if docs else "0%"}])


def example_query(ws, qid: str | None = None) -> pd.DataFrame:
    """One test query and the passages that matter for it: labelled positives (with grade) and,
    where the collection knows them (`Split.annotations`, e.g. rqakit/toy), near-duplicate
    distractors and relevant passages missing from the qrels (false negatives)."""
    split = ws.test
    distractors, unlabelled = (split.annotations.get(kind, {}) for kind in ("distractors", "unlabelled"))
    if qid is None:
        qid = ([q for q in sorted(split.qrels) if unlabelled.get(q)] or sorted(split.qrels))[0]
    roles = [(d, f"labelled relevant (grade {g})") for d, g in sorted(split.qrels[qid].items(), key=lambda x: -x[1])]
    roles += [(d, "near-duplicate distractor (hard negative)") for d in sorted(distractors.get(qid, ()))]
    roles += [(d, "relevant but NOT in the qrels (false negative)") for d in sorted(unlabelled.get(qid, ()))]
    docs = ws.corpus.get_many([d for d, _ in roles])
    return pd.DataFrame([{"query": split.queries[qid], "role": role, "doc_id": d, "passage": ws.corpus.passage_text(doc)}
                         for (d, role), doc in zip(roles, docs)])


def history_summary(folder: str | Path) -> dict:
    """Steps, first and last loss, mean step seconds of a training stage's history.json."""
    history = StageFolder(folder).history
    if not history:
        return {"steps": 0}
    return {"steps": len(history), "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"],
            "mean_step_s": float(np.mean([h["seconds"] for h in history]))}


def augment_table(summary: dict) -> pd.DataFrame:
    """The augment stage's counts and the re-ranker's scoring throughput, as one column."""
    scoring = summary.get("scoring", {})
    items = {**{f"{kind} lists": n for kind, n in summary.get("lists", {}).items()},
             "queries used": summary.get("queries_used"),
             "pseudo-positives (denoised lists led by a CE-confident unlabelled passage)": summary.get("pseudo_positives"),
             "candidates dropped as likely false negatives": summary.get("dropped_as_false_negative"),
             "denoised lists filled from beyond the scored window": summary.get("fallback_lists"),
             "CE scoring, tokens/s": round(scoring.get("tokens_per_s", float("nan")), 1)}
    return pd.Series(items, dtype=object).to_frame("value")


def list_example(ws, lists: pd.DataFrame, kind: str = "denoised") -> pd.DataFrame:
    """The first list of `kind`: each row's passage, label and warm CE logit (index 0 = positive)."""
    first = lists[lists["kind"] == kind].iloc[0]
    docs = ws.corpus.get_many(list(first["doc_ids"]))
    return pd.DataFrame({"query": ws.train.queries[first["query_id"]], "doc_id": list(first["doc_ids"]),
                         "label": list(first["labels"]), "ce_logit": np.round(list(first["ce_scores"]), 3),
                         "passage": [ws.corpus.passage_text(d)[:120] for d in docs]})

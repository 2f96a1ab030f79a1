"""Ask a trained system a question: a collection's top k for one free-text query (`rqakit search`).

    answer = ask("what does the golden otter eat", retriever="FOLDER/retriever", dataset="toy", k=10,
                 rerank="FOLDER/reranker")
    print(format_answer(answer))   # rank, doc id, retriever (and re-ranker) score, qrels label, title

`dataset` is an ir_datasets ID or a profile name (its train collection, titles as the profile
reads them). The corpus is encoded once: the passage embeddings `warmup_de` kept beside its
`model/` (`corpus_emb/`, when they match the retriever and the collection) are read as they are;
otherwise they are built once into `<RQAKIT_CACHE>/search/<key>/` (`encode.encode_corpus` shards,
resumable), the key a fingerprint of what decides them: the passage tower's weights and options,
the collection (`ir_datasets.docs_parent_id`), titles on or off and the compute dtype. A second
question to the same system encodes only the query. When the query text equals a query of the
collection's splits (or with `query_id`), each hit carries that query's qrels label.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rqakit.errors import RqaError

FREE_QUERY_ID = "query"
DEFAULT_RERANK_DEPTH = 30
SEARCH_CACHE = "search"


@dataclass
class Collection:
    """What `dataset` names: the corpus to search and the query splits whose qrels label the hits."""

    name: str
    corpus: object        # rqakit.data.Corpus
    split_ids: list[str]


def open_collection(dataset: str, use_titles: bool | None = None) -> Collection:
    """A profile name (its data.train corpus, data.train and data.eval splits, data.use_titles) or
    an ir_datasets ID (its splits: itself when it has queries, else its children that have)."""
    from rqakit.config import load_config, profile_names
    from rqakit.data import load_corpus
    from rqakit.data.irds import child_ids, open_dataset

    if dataset in profile_names():
        data = load_config(dataset).data
        titles = data.use_titles if use_titles is None else use_titles
        splits = [split for split in (data.train, data.eval) if split]
        return Collection(dataset, load_corpus(data.train, use_titles=titles), splits)
    corpus = load_corpus(dataset, use_titles=True if use_titles is None else use_titles)
    candidates = [dataset] if open_dataset(dataset).has_queries() else child_ids(dataset, limit=50)
    return Collection(dataset, corpus, [split for split in candidates if open_dataset(split).has_queries()])


def find_query(collection: Collection, text: str | None, query_id: str | None):
    """(query text, qid, split) of `query_id`, or of the first split query whose text equals `text`;
    (text, None, None) for a free-text query. RqaError for a query id no split holds."""
    from rqakit.data import load_split

    for split_id in collection.split_ids:
        split = load_split(split_id, require_qrels=False)
        if query_id is not None and query_id in split.queries:
            return (text or split.queries[query_id]), query_id, split
        if query_id is None and text is not None:
            qid = next((q for q, t in split.queries.items() if t.strip() == text.strip()), None)
            if qid is not None:
                return text, qid, split
    if query_id is not None:
        raise RqaError(f"query id {query_id!r} is in none of {', '.join(collection.split_ids) or 'no split'}; "
                       "check the id or give the query text instead")
    if not text or not text.strip():
        raise RqaError("give a query text (or --query-id ID of a query of the collection)")
    return text, None, None


def collection_id(dataset_id: str) -> str:
    """The ID whose documents `dataset_id` serves (beir/scifact/test -> beir/scifact)."""
    import ir_datasets

    try:
        return ir_datasets.docs_parent_id(dataset_id) or dataset_id
    except KeyError:   # not registered in this process
        return dataset_id


def corpus_key(de, corpus, dtype: torch.dtype) -> str:
    """Fingerprint of what decides a corpus's passage embeddings (16 hex digits)."""
    from rqakit.runtime import dtype_name

    options = {k: v for k, v in de.options().items() if k not in ("temperature", "query_max_length")}
    settings = dict(options, collection=collection_id(corpus.dataset_id),
                    use_titles=bool(corpus.use_titles), compute_dtype=dtype_name(dtype))
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in de.passage_encoder.state_dict().items():
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def stage_embeddings(retriever: str | Path, de, corpus):
    """The `corpus_emb/` that `warmup_de` saved beside this retriever's folder, when complete and
    encoded by the same model settings from the same collection with titles alike; else None."""
    from rqakit.encode import EmbeddingShards

    if not Path(retriever, "rqakit.json").is_file():   # a backbone read zero-shot: no stage beside it
        return None
    stage = Path(retriever).resolve().parent
    emb_dir, config_path = stage / "corpus_emb", stage / "config.json"
    if not (emb_dir / "embeddings.json").is_file() or not config_path.is_file():
        return None
    shards = EmbeddingShards(emb_dir)
    data = json.loads(config_path.read_text(encoding="utf-8")).get("data", {})
    same_corpus = (bool(data.get("train")) and collection_id(data["train"]) == collection_id(corpus.dataset_id)
                   and bool(data.get("use_titles", True)) == bool(corpus.use_titles))
    same_model = all(shards.manifest.get(key) == value for key, value in de.options().items())
    return shards if shards.complete and same_corpus and same_model else None


def corpus_embeddings(retriever: str | Path, de, corpus, dtype: torch.dtype, *, cache_root: Path | None = None,
                      batch_size: int = 64):
    """(EmbeddingShards of the corpus, their folder, whether they were there already); built in `dtype`."""
    from rqakit.encode import EmbeddingShards, encode_corpus
    from rqakit.models.backbone import cache_dir

    found = stage_embeddings(retriever, de, corpus)
    if found is not None:
        return found, found.out_dir, True
    folder = Path(cache_root or cache_dir() / SEARCH_CACHE) / corpus_key(de, corpus, dtype)
    if (folder / "embeddings.json").is_file() and EmbeddingShards(folder).complete:
        return EmbeddingShards(folder), folder, True
    shards = encode_corpus(de, corpus.iter_docs(), folder, batch_size=batch_size, total=corpus.known_len(),
                           compute_dtype=dtype)
    return shards, folder, False


def ask(query: str | None, *, retriever: str, dataset: str, k: int = 10, rerank: str | None = None,
        depth: int | None = None, query_id: str | None = None, use_titles: bool | None = None,
        batch_size: int = 64, precision: str | None = None, cache_root: Path | None = None) -> dict:
    """The top k of `dataset` for `query` (or the split query `query_id`), each with its retriever
    score, its re-ranker logit when `rerank` names a re-ranker folder (which re-scores the
    retriever's top `depth`, default max(k, 30)) and its qrels label when the query is a split's.
    precision: "fp32" or "auto" (runtime.precision; None: the process's)."""
    from rqakit.encode import encode_queries
    from rqakit.runs import ranked
    from rqakit.runtime import compute_dtype
    from rqakit.search import dense_search, load_dual_encoder

    started = time.perf_counter()
    collection = open_collection(dataset, use_titles)
    text, qid, split = find_query(collection, query, query_id)
    de = load_dual_encoder(retriever)
    dtype = compute_dtype(de.device, precision)
    shards, folder, reused = corpus_embeddings(retriever, de, collection.corpus, dtype, cache_root=cache_root,
                                               batch_size=batch_size)
    depth = max(k, depth or DEFAULT_RERANK_DEPTH) if rerank else k
    run_id = qid or FREE_QUERY_ID
    q_emb = encode_queries(de, [text], batch_size=batch_size, compute_dtype=dtype, progress=False)
    retrieved = dense_search(q_emb, shards, depth, query_ids=[run_id])[run_id]
    final, reranked = retrieved, None
    if rerank:
        from rqakit.models import CrossEncoder
        from rqakit.rerank import rerank as rerank_run

        if not Path(rerank, "rqakit.json").exists():
            raise RqaError(f"--rerank {rerank} is not a cross-encoder folder written by the kit (no rqakit.json)")
        reranked = rerank_run(CrossEncoder.from_pretrained(rerank), {run_id: retrieved}, {run_id: text},
                              collection.corpus, top_n=depth, batch_size=batch_size, compute_dtype=dtype,
                              progress=False)[run_id]
        final = reranked
    top = ranked(final)[:k]
    docs = collection.corpus.get_many([doc_id for doc_id, _ in top])
    labels = split.qrels.get(qid, {}) if split is not None else None
    hits = []
    for rank, ((doc_id, _), doc) in enumerate(zip(top, docs), start=1):
        hit = {"rank": rank, "doc_id": doc_id, "retriever": round(float(retrieved[doc_id]), 6)}
        if reranked is not None:
            hit["reranker"] = round(float(reranked[doc_id]), 6)
        if labels is not None:
            hit["label"] = labels.get(doc_id)
        hits.append({**hit, "title": doc.title, "text": doc.text})
    return {"query": text, "query_id": qid, "split": split.dataset_id if split is not None else None,
            "dataset": dataset, "corpus": collection.corpus.dataset_id, "retriever": str(retriever),
            "reranker": rerank, "cache": {"folder": str(folder), "reused": reused},
            "hits": hits, "seconds": round(time.perf_counter() - started, 2)}


def format_answer(answer: dict, width: int = 100) -> str:
    """The answer as a table: rank, doc id, scores, label (when known), title or the text's start."""
    where = f"{answer['split']} {answer['query_id']}" if answer["query_id"] else "not a query of the collection"
    cache = "reused" if answer["cache"]["reused"] else "built"
    lines = [f"query: {answer['query']}  ({where})",
             f"corpus {answer['corpus']}: embeddings {cache} in {answer['cache']['folder']} ({answer['seconds']} s)"]
    hits = answer["hits"]
    columns = ["rank", "doc_id", "retriever"] + ["reranker"] * ("reranker" in (hits[0] if hits else {}))
    columns += ["label"] * (answer["query_id"] is not None)
    id_width = max([len("doc_id")] + [len(hit["doc_id"]) for hit in hits])
    widths = {"rank": 4, "doc_id": id_width, "retriever": 10, "reranker": 10, "label": 5}
    lines.append("  ".join(f"{c:>{widths[c]}}" if c != "doc_id" else f"{c:<{id_width}}" for c in columns) + "  title")
    for hit in hits:
        cells = []
        for column in columns:
            value = hit.get(column)
            if column in ("retriever", "reranker"):
                cells.append(f"{value:>{widths[column]}.4f}")
            elif column == "doc_id":
                cells.append(f"{value:<{id_width}}")
            else:
                cells.append(f"{'-' if value is None else value:>{widths[column]}}")
        row = "  ".join(cells)
        shown = hit["title"] or hit["text"]
        lines.append(f"{row}  {shown[:max(20, width - len(row) - 2)]}")
    return "\n".join(lines)

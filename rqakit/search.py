"""Index and search: exact dense search with faiss, BM25 with bm25s, and both over a corpus.

Dense search follows the official code (``src/finetune/dual_encoder_infer.py``,
``src/index_search.py``, ``src/merge.py``): passage embeddings go into ``faiss.IndexFlatIP``
(exact inner product, Eq. 1), the corpus is split into shards that are searched one at a time,
and the per-shard top-k lists are merged by score. ``dense_retrieve`` encodes a corpus once
(``rqakit.encode``) and searches every query set against it. Runs come back with each query's
documents in rank order (``rqakit.runs``).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer
import torch

from rqakit.errors import RqaError
from rqakit.runs import Run, check_k
from rqakit.types import Doc, passage_text

Shard = tuple[Sequence[str], np.ndarray]   # (doc ids, embeddings (n_i, d))

GPU_MAX_K = 2048   # faiss GPU indexes return at most 2048 neighbours per query


# ---------------------------------------------------------------- dense search (faiss)

def faiss_has_gpu() -> bool:
    """True when the installed faiss is built with CUDA and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _resolve_use_gpu(use_gpu, k: int) -> bool:
    """Decide whether to search on GPU: "auto" uses one when faiss has GPU support."""
    if use_gpu not in ("auto", True, False):
        raise RqaError(f"use_gpu must be 'auto', True or False, got {use_gpu!r}")
    if use_gpu is True and not faiss_has_gpu():
        raise RqaError("use_gpu=True but faiss has no GPU support here; install faiss-gpu or pass use_gpu='auto'")
    if use_gpu is False or not faiss_has_gpu():
        return False
    if k > GPU_MAX_K:
        if use_gpu is True:
            raise RqaError(f"faiss GPU search returns at most {GPU_MAX_K} documents per query, got k={k}; "
                           "lower k or pass use_gpu='auto' to search on CPU")
        return False
    return True


def _check_queries(query_emb, query_ids) -> np.ndarray:
    """Query embeddings as float32 C-contiguous (nq, d), one id per row."""
    query_emb = np.asarray(query_emb)
    if query_emb.ndim != 2:
        raise RqaError(f"query embeddings must be a 2-D array (num_queries, dim), got shape {query_emb.shape}")
    if len(query_ids) != query_emb.shape[0]:
        raise RqaError(f"got {len(query_ids)} query ids for {query_emb.shape[0]} query embeddings; "
                       "pass one id per embedding row")
    return np.ascontiguousarray(query_emb, dtype=np.float32)


def _search_shard(query_emb: np.ndarray, shard_emb: np.ndarray, k: int, gpu_resources):
    """Exact inner-product top-k of one shard: scores (nq, k) float32, row positions (nq, k) int64.

    The shard is copied to float32 only here, so a float16 memmap costs one shard of memory.
    """
    index = faiss.IndexFlatIP(shard_emb.shape[1])
    if gpu_resources is not None:
        index = faiss.index_cpu_to_gpu(gpu_resources, 0, index)
    index.add(np.ascontiguousarray(shard_emb, dtype=np.float32))
    scores, positions = index.search(query_emb, k)
    index.reset()
    return scores, positions


def _merge_top_k(best_scores, best_ids, scores, ids, k: int):
    """Merge two (nq, *) top lists into one (nq, <=k) by score, as the official ``merge.py``.

    The sort is stable and earlier shards come first, so ties keep corpus order.
    """
    if best_scores is not None:
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best_ids, ids], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _iter_checked_shards(shards: Iterable[Shard], dim: int):
    for number, (doc_ids, emb) in enumerate(shards):
        if getattr(emb, "ndim", None) != 2 or emb.shape[1] != dim:
            raise RqaError(f"shard {number} embeddings have shape {getattr(emb, 'shape', None)}, "
                           f"expected (n, {dim}) to match the queries; encode queries and passages with one model")
        if len(doc_ids) != emb.shape[0]:
            raise RqaError(f"shard {number} has {len(doc_ids)} doc ids for {emb.shape[0]} embeddings; "
                           "pass one doc id per embedding row")
        if emb.shape[0] > 0:
            yield doc_ids, emb


def _warn_k_clamped(k: int, num_docs: int) -> None:
    warnings.warn(f"k={k} is larger than the collection ({num_docs} documents); returning all {num_docs}",
                  stacklevel=3)


def dense_search(query_emb: np.ndarray, shards: Iterable[Shard], k: int, *,
                 query_ids: Sequence[str], use_gpu="auto") -> Run:
    """Exact top-k inner-product search over sharded passage embeddings.

    query_emb: (nq, d); shards: ``(doc_ids, emb)`` pairs with emb (n_i, d) float16 or float32
    (memmaps are fine). Each shard is searched with its own ``faiss.IndexFlatIP`` and the per-shard
    top-k lists are merged by score, as the official ``index_search.py`` / ``merge.py`` do with 8
    shards. ``use_gpu`` "auto" searches on GPU when faiss has GPU support. k beyond the corpus size
    is clamped to it with one warning. Returns each query's top k as {doc id: s_de(q, p)}.
    """
    k = check_k(k)
    query_ids = list(query_ids)
    query_emb = _check_queries(query_emb, query_ids)
    gpu_resources = faiss.StandardGpuResources() if _resolve_use_gpu(use_gpu, k) else None
    best_scores = best_ids = None   # (nq, <=k) float32 and object doc ids
    num_docs = 0
    for doc_ids, emb in _iter_checked_shards(shards, query_emb.shape[1]):
        scores, positions = _search_shard(query_emb, emb, min(k, emb.shape[0]), gpu_resources)
        shard_ids = np.asarray(doc_ids, dtype=object)[positions]   # (nq, k_i)
        best_scores, best_ids = _merge_top_k(best_scores, best_ids, scores, shard_ids, k)
        num_docs += emb.shape[0]
    if num_docs == 0:
        raise RqaError("no passage embeddings to search: every shard is empty; encode the corpus first")
    if k > num_docs:
        _warn_k_clamped(k, num_docs)
    return {qid: dict(zip(best_ids[row].tolist(), best_scores[row].tolist()))
            for row, qid in enumerate(query_ids)}


# ---------------------------------------------------------------- BM25 (bm25s)

SETTINGS_FILE = "rqakit_bm25.json"
DOC_IDS_FILE = "doc_ids.json"
PARALLEL_FROM = 256   # queries: fewer are searched on one thread


def _iter_docs(docs) -> Iterable[Doc]:
    """A Corpus streams its docs with ``iter_docs()``; a plain iterable of Doc is used as is."""
    return docs.iter_docs() if hasattr(docs, "iter_docs") else docs


class BM25Index:
    """BM25 over a collection with bm25s (defaults: Lucene variant, k1 = 1.5, b = 0.75).

    Text is lower-cased and split on ``\\b\\w\\w+\\b`` by ``bm25s.tokenize``; by default English stop
    words are dropped and words are stemmed with PyStemmer's English Snowball stemmer. Documents that share no
    term with a query score 0 and are left out of its results, as in Lucene.
    """

    def __init__(self, retriever: bm25s.BM25, doc_ids: list[str], settings: dict):
        self.retriever = retriever
        self.doc_ids = np.asarray(doc_ids, dtype=object)
        self.settings = settings   # stopwords, stemmer, k1, b
        self._stemmer = Stemmer.Stemmer(settings["stemmer"]) if settings["stemmer"] else None

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(cls, docs, *, stopwords="en", stemmer: str | None = "english",
              k1: float = 1.5, b: float = 0.75) -> "BM25Index":
        """Index ``docs`` (an iterable of Doc, or a Corpus) streamed once; the text is
        ``rqakit.types.passage_text`` ("title text" when the doc has a title).

        stopwords: a bm25s language name ("en"), a list of words, or None; stemmer: a PyStemmer
        language ("english") or None.
        """
        settings = dict(stopwords=stopwords, stemmer=stemmer, k1=k1, b=b)
        doc_ids: list[str] = []

        def texts():
            for doc in _iter_docs(docs):
                doc_ids.append(doc.doc_id)
                yield passage_text(doc)

        stemmer_obj = _make_stemmer(stemmer)
        tokens = bm25s.tokenize(texts(), stopwords=_check_stopwords(stopwords), stemmer=stemmer_obj,
                                show_progress=False)
        if not doc_ids:
            raise RqaError("cannot build a BM25 index over an empty collection; check the dataset id")
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, doc_ids, settings)

    def search(self, queries: Mapping[str, str], k: int, threads: int | None = None) -> Run:
        """Top-k BM25 documents for each query text: {qid: {doc id: score}}, in rank order. The
        queries are scored on `threads` threads (default: torch's, the runtime's `threads`) where
        there are `PARALLEL_FROM` or more; each query's top k is the same on any number."""
        k = check_k(k)
        if k > len(self):
            _warn_k_clamped(k, len(self))
            k = len(self)
        qids = list(queries)
        if not qids:
            return {}
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=self.settings["stopwords"],
                                stemmer=self._stemmer, return_ids=False, show_progress=False)
        threads = torch.get_num_threads() if threads is None else threads
        positions, scores = self.retriever.retrieve(tokens, k=k, show_progress=False,   # (nq, k) each
                                                    n_threads=threads if len(qids) >= PARALLEL_FROM else 0)
        return {qid: {doc_id: score for doc_id, score in zip(self.doc_ids[positions[row]].tolist(),
                                                             scores[row].tolist()) if score != 0.0}
                for row, qid in enumerate(qids)}

    def save(self, directory) -> None:
        """bm25s' own index files plus the doc id list and the tokenisation settings."""
        directory = Path(directory)
        self.retriever.save(str(directory), show_progress=False)
        (directory / DOC_IDS_FILE).write_text(json.dumps(self.doc_ids.tolist()), encoding="utf-8")
        (directory / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory) -> "BM25Index":
        directory = Path(directory)
        if not (directory / SETTINGS_FILE).is_file() or not (directory / DOC_IDS_FILE).is_file():
            raise RqaError(f"{directory} holds no saved BM25 index; build one with BM25Index.build(...).save(dir)")
        settings = json.loads((directory / SETTINGS_FILE).read_text(encoding="utf-8"))
        doc_ids = json.loads((directory / DOC_IDS_FILE).read_text(encoding="utf-8"))
        retriever = bm25s.BM25.load(str(directory), show_progress=False)
        return cls(retriever, doc_ids, settings)


def _make_stemmer(language: str | None):
    if language is None:
        return None
    try:
        return Stemmer.Stemmer(language)
    except KeyError:
        raise RqaError(f"unknown stemmer language {language!r}; use a PyStemmer language such as "
                       f"'english', or None") from None


def _check_stopwords(stopwords):
    try:
        bm25s.tokenize([], stopwords=stopwords, show_progress=False)
    except ValueError:
        raise RqaError(f"unknown stop word list {stopwords!r}; use 'en', a list of words, or None") from None
    return stopwords


# ---------------------------------------------------------------- encode, then search

def load_dual_encoder(spec: str, *, pooling: str | None = None, max_length: int | None = None,
                      query_max_length: int | None = None):
    """A kit checkpoint folder (keeps its own options unless overridden) or a backbone read zero-shot."""
    from rqakit.models import DualEncoder

    options = {}
    if max_length:
        options["passage_max_length"] = max_length
    if query_max_length:
        options["query_max_length"] = query_max_length
    if Path(spec, "rqakit.json").exists():
        de = DualEncoder.from_pretrained(spec)
        for key, value in options.items():
            setattr(de, key, value)
        if pooling:
            de.pooling = pooling
        return de
    pooling = pooling or "cls"
    # A sentence-embedding model read with mean pooling is read as it was trained: normalised.
    return DualEncoder.from_backbone(spec, shared=True, pooling=pooling, normalize=pooling == "mean", **options)


@contextlib.contextmanager
def encoded_corpus(de, corpus, emb_dir: Path | None = None, batch_size: int = 64):
    """The corpus's passage-embedding shards, encoded once: in `emb_dir` (kept, resumable) or in a
    temporary folder removed when the block ends."""
    from rqakit.encode import encode_corpus

    with tempfile.TemporaryDirectory() as scratch:
        yield encode_corpus(de, corpus.iter_docs(), Path(emb_dir or scratch), batch_size=batch_size,
                            total=corpus.known_len() if hasattr(corpus, "known_len") else None)


def dense_retrieve(de, corpus, query_sets: Mapping[str, Mapping[str, str]], depth: int, *,
                   emb_dir: Path | None = None, batch_size: int = 64) -> dict[str, Run]:
    """Encode the corpus once (cached shards in emb_dir, else a temporary folder) and search every
    query set: {name: {qid: text}} -> {name: run}, exact inner-product top-depth."""
    from rqakit.encode import encode_queries

    with encoded_corpus(de, corpus, emb_dir, batch_size) as shards:
        return search_query_sets(lambda texts: encode_queries(de, texts, batch_size=batch_size), shards,
                                 query_sets, depth)


def zero_shot_runs(spec: str, corpus, query_sets: Mapping[str, Mapping[str, str]], depth: int,
                   readings: Mapping[str, bool], *, max_length: int | None = None,
                   query_max_length: int | None = None, batch_size: int = 64) -> dict[str, dict[str, Run]]:
    """A backbone read zero-shot under every pooling of `readings` ({pooling: normalize}) from one
    encoding of the corpus and the queries -> {pooling: {name: run}}; each reading's runs are those
    `dense_retrieve` gives for a DualEncoder with that pooling (the same vectors, stored alike)."""
    from rqakit.encode import encode_queries
    from rqakit.models.dual_encoder import PoolingsEncoder

    base = load_dual_encoder(spec, max_length=max_length, query_max_length=query_max_length)
    if not base.shared:
        raise RqaError(f"{spec} has separate query and passage towers; zero-shot readings need one shared tower")
    de = PoolingsEncoder(base.query_encoder, base.tokenizer, dict(readings), pooling=base.pooling,
                         query_max_length=base.query_max_length, passage_max_length=base.passage_max_length)
    with encoded_corpus(de, corpus, batch_size=batch_size) as shards:
        queries = {name: encode_queries(de, list(qs.values()), batch_size=batch_size) for name, qs in query_sets.items()}
        runs: dict[str, dict[str, Run]] = {}
        for pooling in de.readings:
            cols = de.columns(pooling)
            view = [(ids, emb[:, cols]) for ids, emb in shards]
            runs[pooling] = {name: dense_search(np.ascontiguousarray(queries[name][:, cols]), view, depth,
                                                query_ids=list(qs)) if qs else {}
                             for name, qs in query_sets.items()}
    return runs


def search_query_sets(encode: Callable[[list[str]], np.ndarray], shards: Iterable[Shard],
                      query_sets: Mapping[str, Mapping[str, str]], depth: int) -> dict[str, Run]:
    """Encode each query set ({qid: text} -> (nq, d)) and search it against the passage shards:
    {name: {qid: text}} -> {name: run}. An empty query set gives an empty run."""
    shards = shards if isinstance(shards, Sequence) or hasattr(shards, "num_shards") else list(shards)
    runs = {}
    for name, queries in query_sets.items():
        qids = list(queries)
        runs[name] = dense_search(encode([queries[q] for q in qids]), shards, depth, query_ids=qids) if qids else {}
    return runs

"""Batched inference: length-sorted batches, bf16 copies, corpus shards with resume, re-ranking."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rqakit import runtime
from rqakit.data.collection import Doc
from rqakit.encode import (
    EmbeddingShards,
    Throughput,
    encode_corpus,
    encode_passages,
    encode_queries,
    length_sorted_batches,
    run_length_sorted,
    score_pairs,
)
from rqakit.errors import RqaError
from rqakit.models import CrossEncoder, DualEncoder
from rqakit.rerank import ScoreCache, model_tag, rerank

FP32 = torch.float32
TEXTS = [
    "what carries genetic instructions in cells",
    "cat",
    "",
    "the mitochondria is the powerhouse of the cell and makes atp",
    "dna",
    "protein folding",
]
DOCS = [Doc(f"d{i}", f"title {i}", " ".join(["word"] * (i % 4)) + f" text {i}") for i in range(7)]


pytestmark = pytest.mark.usefixtures("tiny_cache")


@pytest.fixture(scope="module")
def dual_encoder():
    return DualEncoder.from_backbone("tiny")


@pytest.fixture(scope="module")
def cross_encoder():
    return CrossEncoder.from_backbone("tiny")


def one_by_one(encode_one, items):
    with torch.no_grad():
        return np.stack([encode_one(item).numpy()[0] for item in items])


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


class CountRows:
    """Wraps a model method and counts the rows it was asked to encode."""

    def __init__(self, monkeypatch, cls, name):
        self.rows = 0
        original = getattr(cls, name)

        def counted(model, batch):
            self.rows += batch["input_ids"].shape[0]
            return original(model, batch)

        monkeypatch.setattr(cls, name, counted)


# -- the batching mechanism ----------------------------------------------------------------------

def test_length_sorted_batches_longest_first_stable():
    batches = length_sorted_batches([3, 7, 5, 7, 1], batch_size=2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]


def test_each_batch_is_padded_to_its_own_longest_row_and_order_is_restored():
    rows = [[101] + [5] * n + [102] for n in (4, 0, 9, 2, 9, 1)]
    encodings = {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}
    widths = []

    def forward(_model, batch):  # (B, L) -> (B,) real length of each row
        widths.append(batch["input_ids"].shape[1])
        return batch["attention_mask"].sum(dim=1)

    stats = Throughput()
    lengths = run_length_sorted(None, forward, encodings, pad_token_id=0, batch_size=2, stats=stats)
    assert lengths.tolist() == [6, 2, 11, 4, 11, 3]  # input order
    assert widths == [11, 6, 3]  # batches (2,4), (0,3), (5,1)
    assert (stats.items, stats.tokens, stats.padded_tokens) == (6, 37, 2 * 11 + 2 * 6 + 2 * 3)


def test_encode_queries_equals_one_by_one_in_input_order(dual_encoder):
    stats = Throughput()
    batched = encode_queries(dual_encoder, TEXTS, batch_size=4, compute_dtype=FP32, stats=stats, progress=False)
    alone = one_by_one(lambda t: dual_encoder.encode_queries(dual_encoder.tokenize_queries([t])), TEXTS)
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=1e-5)
    distances = np.linalg.norm(alone[:, None] - alone[None], axis=-1)[np.triu_indices(len(TEXTS), 1)]
    assert distances.min() > 0.1  # rows differ enough that a misplaced row would fail
    lengths = [len(ids) for ids in dual_encoder.tokenize_queries(TEXTS, pad=False)["input_ids"]]
    assert (stats.items, stats.tokens) == (len(TEXTS), sum(lengths)) and stats.tokens_per_s > 0


def test_encode_passages_equals_one_by_one(dual_encoder):
    batched = encode_passages(dual_encoder, DOCS, batch_size=3, compute_dtype=FP32, progress=False)
    alone = one_by_one(lambda d: dual_encoder.encode_passages(dual_encoder.tokenize_passages([d])), DOCS)
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=1e-5)


def test_bf16_copy_is_close_to_fp32_and_leaves_the_model_untouched(dual_encoder, cross_encoder):
    dual_encoder.train()
    fp32 = encode_queries(dual_encoder, TEXTS, compute_dtype=FP32, progress=False)
    bf16 = encode_queries(dual_encoder, TEXTS, compute_dtype=torch.bfloat16, progress=False)
    assert cosines(fp32, bf16).min() > 0.99  # measured 0.9999 on the tiny model
    assert dual_encoder.training and all(p.dtype == FP32 for p in dual_encoder.parameters())
    dual_encoder.eval()
    queries = ["dna"] * len(DOCS)
    fp32_scores = score_pairs(cross_encoder, queries, DOCS, compute_dtype=FP32, progress=False)
    bf16_scores = score_pairs(cross_encoder, queries, DOCS, compute_dtype=torch.bfloat16, progress=False)
    np.testing.assert_allclose(bf16_scores, fp32_scores, atol=0.02)


def test_compute_dtype_follows_the_cpu(monkeypatch):
    """Under runtime.precision auto (a Workspace of a profile with fp32 may have set fp32 before)."""
    monkeypatch.setattr(runtime, "_precision", "auto")
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    assert runtime.compute_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    assert runtime.compute_dtype("cpu") == torch.float32
    assert runtime.autocast(torch.device("cpu")).__class__.__name__ == "nullcontext"  # fp32: no autocast


def test_runtime_precision_fp32_holds_on_a_bf16_cpu_and_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "_precision", runtime._precision)   # restored after the test, as it was
    runtime.set_precision("fp32")
    assert runtime.compute_dtype("cpu") == torch.float32 and runtime.compute_dtype_name("cpu") == "float32"
    runtime.set_precision("auto")
    assert runtime.compute_dtype("cpu") == torch.bfloat16 and runtime.compute_dtype_name("cpu") == "bfloat16"
    with pytest.raises(RqaError, match=r"runtime.precision = 'fp16'; choose one of: auto, fp32"):
        runtime.set_precision("fp16")


def test_cpu_bf16_check_agrees_with_cpuinfo_flags():
    flags = open("/proc/cpuinfo").read().split()
    assert runtime.cpu_supports_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_empty_strings_and_empty_inputs(dual_encoder, cross_encoder):
    embeddings = encode_queries(dual_encoder, ["", "dna"], compute_dtype=FP32, progress=False)
    assert embeddings.shape == (2, 32) and np.isfinite(embeddings).all()
    empty_docs = [Doc("a", "", ""), Doc("b", "title", "")]
    assert np.isfinite(encode_passages(dual_encoder, empty_docs, compute_dtype=FP32, progress=False)).all()
    assert np.isfinite(score_pairs(cross_encoder, ["", "q"], empty_docs, compute_dtype=FP32, progress=False)).all()
    assert encode_queries(dual_encoder, [], progress=False).shape == (0, 32)
    assert score_pairs(cross_encoder, [], [], progress=False).shape == (0,)


def test_score_pairs_equals_the_cross_encoder_pair_by_pair(cross_encoder):
    queries = TEXTS + ["cat"]
    scores = score_pairs(cross_encoder, queries, DOCS, batch_size=3, compute_dtype=FP32, progress=False)
    alone = np.array([
        cross_encoder(cross_encoder.tokenize_pairs([q], [d])).item() for q, d in zip(queries, DOCS)
    ])
    np.testing.assert_allclose(scores, alone, atol=1e-5, rtol=1e-5)
    assert len(set(np.round(alone, 5))) == len(alone)  # distinct, so a misplaced score would fail


# -- corpus shards -------------------------------------------------------------------------------

def test_encode_corpus_writes_shards_and_resumes_only_missing_ones(dual_encoder, tmp_path, monkeypatch):
    counter = CountRows(monkeypatch, DualEncoder, "encode_passages")
    shards = encode_corpus(dual_encoder, DOCS, tmp_path, shard_size=3, compute_dtype=FP32, progress=False)
    assert counter.rows == 7 and shards.complete
    assert len(shards) == 7 and shards.num_shards == 3
    assert shards.all_ids() == [d.doc_id for d in DOCS] and shards.ids(2) == ["d6"]
    assert shards.embeddings(0).dtype == np.float16 and shards.embeddings(2).shape == (1, 32)
    expected = encode_passages(dual_encoder, DOCS, compute_dtype=FP32, progress=False)
    stored = np.concatenate([emb for _, emb in shards]).astype(np.float32)
    np.testing.assert_allclose(stored, expected, atol=0.01, rtol=2e-3)

    os.remove(tmp_path / "shard_00001.npy")  # as if killed while writing shard 1
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = tmp_path / f".shard_00001.npy.tmp-{dead.stdout.strip()}"   # left by a killed process
    partial.write_bytes(b"half")
    counter.rows = 0
    resumed = encode_corpus(dual_encoder, DOCS, tmp_path, shard_size=3, compute_dtype=FP32, progress=False)
    assert counter.rows == 3  # only shard 1's docs were encoded again
    assert np.array_equal(np.concatenate([emb for _, emb in resumed]).astype(np.float32), stored)
    assert not partial.exists()

    counter.rows = 0
    encode_corpus(dual_encoder, DOCS, tmp_path, shard_size=3, compute_dtype=FP32, progress=False)
    assert counter.rows == 0
    assert len(EmbeddingShards(tmp_path)) == 7


def test_encode_corpus_refuses_a_folder_of_another_corpus_or_settings(dual_encoder, tmp_path):
    encode_corpus(dual_encoder, DOCS[:4], tmp_path, shard_size=2, compute_dtype=FP32, progress=False)
    with pytest.raises(RqaError, match="shard 0 .* other documents"):
        encode_corpus(dual_encoder, DOCS[3:], tmp_path, shard_size=2, compute_dtype=FP32, progress=False)
    with pytest.raises(RqaError, match=r"other settings \(shard_size\)"):
        encode_corpus(dual_encoder, DOCS[:4], tmp_path, shard_size=3, compute_dtype=FP32, progress=False)
    with pytest.raises(RqaError, match="embedding folder .* does not exist"):
        EmbeddingShards(tmp_path / "nothing")


# -- re-ranking ----------------------------------------------------------------------------------

class DictCorpus:
    def __init__(self, docs):
        self.docs = {doc.doc_id: doc for doc in docs}

    def get(self, doc_id):
        return self.docs[doc_id]


QUERY_TEXTS = {"q1": "what carries genetic instructions", "q2": "cat"}
RUN = {
    "q1": {"d0": 3.0, "d1": 9.0, "d2": 5.0, "d3": 5.0, "d4": 1.0},
    "q2": {"d5": 2.0, "d6": 1.0},
}


def test_rerank_rescores_only_the_top_n_and_orders_by_cross_encoder(cross_encoder, monkeypatch):
    counter = CountRows(monkeypatch, CrossEncoder, "forward")
    reranked = rerank(cross_encoder, RUN, QUERY_TEXTS, DictCorpus(DOCS), top_n=3,
                      compute_dtype=FP32, progress=False)
    assert counter.rows == 5  # q1: d1, d2, d3 (tie broken by id); q2: both of its two
    assert set(reranked["q1"]) == {"d1", "d2", "d3"} and set(reranked["q2"]) == {"d5", "d6"}
    pairs = [("q1", "d1"), ("q1", "d2"), ("q1", "d3"), ("q2", "d5"), ("q2", "d6")]
    expected = score_pairs(cross_encoder, [QUERY_TEXTS[q] for q, _ in pairs],
                           [DictCorpus(DOCS).get(d) for _, d in pairs], compute_dtype=FP32, progress=False)
    for (qid, doc_id), score in zip(pairs, expected):
        assert reranked[qid][doc_id] == pytest.approx(float(score), abs=1e-6)
    for ranking in reranked.values():
        scores = list(ranking.values())
        assert scores == sorted(scores, reverse=True)


def test_rerank_names_a_doc_missing_from_the_corpus(cross_encoder):
    with pytest.raises(RqaError, match=r"doc id 'd9' .*not in the corpus"):
        rerank(cross_encoder, {"q2": {"d9": 1.0}}, QUERY_TEXTS, DictCorpus(DOCS), progress=False)
    with pytest.raises(RqaError, match=r"query 'q7' .*no text"):
        rerank(cross_encoder, {"q7": {"d1": 1.0}}, QUERY_TEXTS, DictCorpus(DOCS), progress=False)


def test_score_cache_skips_known_pairs_and_persists(cross_encoder, tmp_path, monkeypatch):
    counter = CountRows(monkeypatch, CrossEncoder, "forward")
    cache = ScoreCache(tmp_path / "ce_scores.parquet")
    first = rerank(cross_encoder, RUN, QUERY_TEXTS, DictCorpus(DOCS), top_n=3,
                   compute_dtype=FP32, cache=cache, progress=False)
    assert counter.rows == 5 and len(cache) == 5
    cache.save()

    counter.rows = 0
    reloaded = ScoreCache(tmp_path / "ce_scores.parquet")
    again = rerank(cross_encoder, RUN, QUERY_TEXTS, DictCorpus(DOCS), top_n=4,
                   compute_dtype=FP32, cache=reloaded, progress=False)
    assert counter.rows == 1  # only q1's 4th document (d0) is new
    assert {q: {d: s for d, s in r.items() if d != "d0"} for q, r in again.items()} == first

    counter.rows = 0
    rerank(cross_encoder, RUN, QUERY_TEXTS, DictCorpus(DOCS), top_n=3,
           compute_dtype=FP32, cache=reloaded, tag="another model", progress=False)
    assert counter.rows == 5


def test_model_tag_changes_with_the_weights(cross_encoder):
    tag = model_tag(cross_encoder, compute_dtype=FP32)
    assert tag == model_tag(cross_encoder, compute_dtype=FP32)
    assert tag != model_tag(cross_encoder, compute_dtype=torch.bfloat16)
    with torch.no_grad():
        cross_encoder.score_head.bias.add_(1.0)
    try:
        assert model_tag(cross_encoder, compute_dtype=FP32) != tag
    finally:
        with torch.no_grad():
            cross_encoder.score_head.bias.sub_(1.0)

"""Search: exact faiss top-k against numpy, bm25s on a toy collection, TREC runs, and fusion by hand."""

import math
import warnings

import numpy as np
import pytest

from rqakit.errors import RqaError
from rqakit.fusion import interpolate, reciprocal_rank_fusion
from rqakit.runs import check_run_docs, ranked, read_trec_run, top_k, write_trec_run
from rqakit.search import BM25Index, dense_search
from rqakit.types import Doc

# ------------------------------------------------------------------ dense search

NUM_DOCS, DIM, NUM_QUERIES = 50, 8, 4
DOC_IDS = [f"d{i}" for i in range(NUM_DOCS)]
QUERY_IDS = [f"q{i}" for i in range(NUM_QUERIES)]


def _vectors(dtype=np.float32):
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((NUM_QUERIES, DIM)).astype(np.float32)
    docs = rng.standard_normal((NUM_DOCS, DIM)).astype(dtype)
    return queries, docs


def _brute_force(queries, docs, k):
    """Top-k by numpy inner products: {qid: [(doc id, score), ...]} best first."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T   # (nq, n)
    order = np.argsort(-scores, axis=1)[:, :k]
    return {qid: [(DOC_IDS[j], scores[row, j]) for j in order[row]] for row, qid in enumerate(QUERY_IDS)}


def _shards(docs, bounds):
    return [(DOC_IDS[lo:hi], docs[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _assert_matches_brute_force(run, expected):
    assert list(run) == QUERY_IDS
    for qid, pairs in expected.items():
        assert list(run[qid]) == [doc_id for doc_id, _ in pairs]
        np.testing.assert_allclose(list(run[qid].values()), [s for _, s in pairs], rtol=1e-5, atol=1e-5)


def test_dense_search_one_shard_is_exact_top_k():
    queries, docs = _vectors()
    run = dense_search(queries, [(DOC_IDS, docs)], 10, query_ids=QUERY_IDS, use_gpu=False)
    _assert_matches_brute_force(run, _brute_force(queries, docs, 10))


def test_dense_search_three_shards_merge_to_the_one_shard_result():
    queries, docs = _vectors()
    one = dense_search(queries, [(DOC_IDS, docs)], 10, query_ids=QUERY_IDS, use_gpu=False)
    # shards smaller than k and a generator of shards, as a memmap reader would give
    three = dense_search(queries, iter(_shards(docs, [0, 7, 30, 50])), 10, query_ids=QUERY_IDS, use_gpu=False)
    assert three == one   # same ids, same order, same float scores


def test_dense_search_float16_shards_score_in_float32():
    queries, docs16 = _vectors(np.float16)
    run = dense_search(queries, _shards(docs16, [0, 25, 50]), 5, query_ids=QUERY_IDS, use_gpu=False)
    _assert_matches_brute_force(run, _brute_force(queries, docs16.astype(np.float32), 5))


def test_dense_search_clamps_k_to_corpus_with_one_warning():
    queries, docs = _vectors()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = dense_search(queries, _shards(docs, [0, 20, 50]), 80, query_ids=QUERY_IDS, use_gpu=False)
    assert len(caught) == 1 and "50 documents" in str(caught[0].message)
    _assert_matches_brute_force(run, _brute_force(queries, docs, NUM_DOCS))


def test_dense_search_rejects_mismatched_dimensions_and_ids():
    queries, docs = _vectors()
    with pytest.raises(RqaError, match="expected \\(n, 8\\)"):
        dense_search(queries, [(DOC_IDS, docs[:, :4])], 3, query_ids=QUERY_IDS, use_gpu=False)
    with pytest.raises(RqaError, match="one id per embedding row"):
        dense_search(queries, [(DOC_IDS, docs)], 3, query_ids=QUERY_IDS[:2], use_gpu=False)


# ------------------------------------------------------------------ BM25

TOY_DOCS = [
    Doc("d1", "Trail guide", "She was running in new shoes on the trail"),
    Doc("d2", "", "Shoes and socks for sale"),
    Doc("d3", "Cooking", "A recipe for bread and butter"),
    Doc("d4", "", "Marathon training plans for runners"),
]


def test_bm25_ranks_the_doc_with_both_stemmed_terms_first():
    index = BM25Index.build(TOY_DOCS)
    run = index.search({"q1": "running shoes"}, 4)
    ids = list(run["q1"])
    assert ids[0] == "d1"        # "running" -> run, "shoes" -> shoe
    assert ids[1] == "d2"        # shoe only
    assert "d3" not in ids       # shares no term: score 0, left out


def test_bm25_ignores_stop_words_and_uses_titles():
    index = BM25Index.build(TOY_DOCS)
    with_stop_words = index.search({"q": "the bread of the cooking"}, 2)["q"]
    without = index.search({"q": "bread cooking"}, 2)["q"]
    assert with_stop_words == without and list(without) == ["d3"]   # "cooking" is only in d3's title
    no_titles = BM25Index.build([Doc(d.doc_id, "", d.text) for d in TOY_DOCS])  # as a Corpus with titles off
    assert no_titles.search({"q": "cooking"}, 2) == {"q": {}}


def test_bm25_save_load_round_trip_gives_identical_runs(tmp_path):
    queries = {"q1": "running shoes", "q2": "marathon bread"}
    index = BM25Index.build(iter(TOY_DOCS))
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.search(queries, 3) == index.search(queries, 3)
    assert loaded.settings == index.settings


def test_bm25_on_several_threads_gives_the_one_thread_run():
    words = ["running", "shoes", "trail", "bread", "butter", "marathon", "socks", "recipe", "guide", "plans"]
    rng = np.random.default_rng(0)
    docs = [Doc(f"d{i}", "", " ".join(rng.choice(words, size=8))) for i in range(300)]
    queries = {f"q{i}": " ".join(rng.choice(words, size=3)) for i in range(300)}   # >= PARALLEL_FROM
    index = BM25Index.build(docs)
    one = index.search(queries, 20, threads=0)
    assert index.search(queries, 20, threads=2) == one and all(one.values())


def test_bm25_clamps_k_with_one_warning():
    index = BM25Index.build(TOY_DOCS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = index.search({"q": "shoes"}, 10)
    assert len(caught) == 1 and "4 documents" in str(caught[0].message)
    assert set(run["q"]) == {"d1", "d2"}


# ------------------------------------------------------------------ runs

RUN = {"q1": {"d1": 2.5, "d2": 0.1, "d3": 2.5}, "q2": {"d9": -1.25}}


def test_ranked_breaks_ties_by_doc_id_and_top_k_cuts():
    assert ranked(RUN["q1"]) == [("d1", 2.5), ("d3", 2.5), ("d2", 0.1)]
    assert top_k(RUN, 2) == {"q1": {"d1": 2.5, "d3": 2.5}, "q2": {"d9": -1.25}}


def test_trec_run_write_read_round_trip(tmp_path):
    run = {"q1": {"d1": 0.1 + 0.2, "d2": 1e-12}, "q2": {"d3": -7.0}}
    path = tmp_path / "runs" / "dev.trec"
    write_trec_run(run, path, tag="bm25")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d1 1 0.30000000000000004 bm25"
    assert lines[1].split()[3] == "2" and len(lines) == 3
    assert read_trec_run(path) == run
    assert [p.name for p in path.parent.iterdir()] == ["dev.trec"]   # no temp file left


def test_check_run_docs_names_the_unknown_doc():
    check_run_docs(RUN, {"d1", "d2", "d3", "d9"})
    with pytest.raises(RqaError, match="run names document 'd9' which is not in the collection beir/scifact"):
        check_run_docs(RUN, ["d1", "d2", "d3"], collection_id="beir/scifact")


# ------------------------------------------------------------------ fusion

def test_reciprocal_rank_fusion_by_hand():
    run_a = {"q": {"x": 3.0, "y": 2.0, "z": 1.0}}   # ranks x1 y2 z3
    run_b = {"q": {"z": 9.0, "x": 5.0}}             # ranks z1 x2
    fused = reciprocal_rank_fusion([run_a, run_b])["q"]
    expected = {"x": 1 / 61 + 1 / 62, "z": 1 / 63 + 1 / 61, "y": 1 / 62}
    assert list(fused) == ["x", "z", "y"]
    for doc_id, score in expected.items():
        assert math.isclose(fused[doc_id], score, rel_tol=1e-12)
    weighted = reciprocal_rank_fusion([run_a, run_b], k=0, weights=[2.0, 1.0])["q"]
    assert math.isclose(weighted["z"], 2 / 3 + 1 / 1) and math.isclose(weighted["y"], 2 / 2)


def test_interpolate_minmax_by_hand():
    run_a = {"q": {"x": 10.0, "y": 20.0, "z": 30.0}}   # normalised x 0, y 0.5, z 1
    run_b = {"q": {"x": 4.0, "w": 2.0}}                # normalised x 1, w 0
    fused = interpolate(run_a, run_b, weight_a=0.25)["q"]
    expected = {"x": 0.25 * 0.0 + 0.75 * 1.0,    # 0.75
                "z": 0.25 * 1.0 + 0.75 * 0.0,    # 0.25 (missing from b: 0)
                "y": 0.25 * 0.5 + 0.75 * 0.0,    # 0.125
                "w": 0.25 * 0.0 + 0.75 * 0.0}    # 0.0 (missing from a: 0)
    assert list(fused) == ["x", "z", "y", "w"]
    assert fused == pytest.approx(expected)
    with pytest.raises(RqaError, match="weight_a"):
        interpolate(run_a, run_b, weight_a=1.5)


def test_zero_shot_readings_from_one_encoding_equal_one_encoding_per_pooling(tiny_cache):
    """baselines reads the backbone mean-pooled (normalised) and [CLS] from one forward per text;
    each reading's runs are those of its own DualEncoder, vector for vector."""
    from rqakit.search import dense_retrieve, load_dual_encoder, zero_shot_runs
    from rqakit.types import Doc

    class Corpus:
        docs = [Doc(f"d{i}", f"passage number {i} about {w}", "t") for i, w in enumerate(
            ["cells", "genes", "proteins", "mice", "dna", "rna", "virus", "cancer", "brain", "heart"])]

        def iter_docs(self):
            return iter(self.docs)

    queries = {"test": {"q1": "genes and dna", "q2": "heart cells", "q3": "virus"}, "empty": {}}
    joint = zero_shot_runs("tiny", Corpus(), queries, 5, {"mean": True, "cls": False}, max_length=16,
                           query_max_length=8, batch_size=4)
    for pooling in ("mean", "cls"):
        alone = dense_retrieve(load_dual_encoder("tiny", pooling=pooling, max_length=16, query_max_length=8),
                               Corpus(), queries, 5, batch_size=4)
        assert joint[pooling]["empty"] == alone["empty"] == {}
        for qid, ranking in alone["test"].items():
            assert list(joint[pooling]["test"][qid]) == list(ranking)
            assert list(joint[pooling]["test"][qid].values()) == pytest.approx(list(ranking.values()), abs=1e-6)
    assert joint["mean"]["test"] != joint["cls"]["test"]

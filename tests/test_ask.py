"""`rqakit search`: one query against a collection, the kit's own ranking, corpus embeddings cached."""
import json

import pytest

from rqakit.ask import ask
from rqakit.cli import main
from rqakit.data import load_corpus, load_split
from rqakit.errors import RqaError
from rqakit.models import CrossEncoder, DualEncoder
from rqakit.rerank import rerank
from rqakit.runs import ranked
from rqakit.search import dense_retrieve

K = 5


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    """A random tiny retriever and re-ranker saved as the kit saves trained ones."""
    root = tmp_path_factory.mktemp("systems")
    DualEncoder.from_backbone("tiny", pooling="mean", normalize=True).save_pretrained(root / "retriever")
    CrossEncoder.from_backbone("tiny", pooling="mean").save_pretrained(root / "reranker")
    return root


@pytest.fixture
def search_cache(tmp_path, monkeypatch):
    """A fresh RQAKIT_CACHE (the tiny backbone is already built into the session's)."""
    monkeypatch.setenv("RQAKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "search"


def kit_run(retriever, text, depth):
    de = DualEncoder.from_pretrained(retriever)
    return dense_retrieve(de, load_corpus("rqakit/toy/train"), {"q": {"q": text}}, depth)["q"]["q"]


def search(capsys, *args) -> str:
    assert main(["search", *map(str, args)]) == 0
    return capsys.readouterr().out


def test_search_prints_the_kit_ranking_with_labels_and_reuses_the_cache(systems, search_cache, capsys, monkeypatch):
    test = load_split("rqakit/toy/test")
    qid, text = next(iter(test.queries.items()))
    answer = json.loads(search(capsys, "--retriever", systems / "retriever", "--dataset", "toy", "--k", K,
                               "--json", text))
    expected = ranked(kit_run(systems / "retriever", text, K))
    assert [hit["doc_id"] for hit in answer["hits"]] == [doc_id for doc_id, _ in expected]
    assert [hit["retriever"] for hit in answer["hits"]] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert (answer["query_id"], answer["split"]) == (qid, "rqakit/toy/test")
    assert [hit["label"] for hit in answer["hits"]] == [test.qrels[qid].get(d) for d, _ in expected]
    assert answer["cache"] == {"folder": str(next(search_cache.iterdir())), "reused": False}

    def no_encoding(*args, **kwargs):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr("rqakit.encode.encode_corpus", no_encoding)
    table = search(capsys, "--retriever", systems / "retriever", "--dataset", "toy", "--k", K, text)
    assert "embeddings reused" in table and f"rqakit/toy/test {qid}" in table
    rows = [line.split() for line in table.splitlines()[3:]]
    assert [row[1] for row in rows] == [doc_id for doc_id, _ in expected]
    assert [row[3] for row in rows] == [str(test.qrels[qid].get(d, "-")) for d, _ in expected]


def test_free_text_with_a_reranker_orders_by_its_logits(systems, search_cache):
    text = "where do otters live"
    answer = ask(text, retriever=str(systems / "retriever"), rerank=str(systems / "reranker"), dataset="toy", k=K,
                 depth=12)
    assert answer["query_id"] is None and all("label" not in hit for hit in answer["hits"])
    retrieved = kit_run(systems / "retriever", text, 12)
    reranked = rerank(CrossEncoder.from_pretrained(systems / "reranker"), {"q": retrieved}, {"q": text},
                      load_corpus("rqakit/toy/train"), top_n=12, progress=False)["q"]
    assert [(h["doc_id"], h["reranker"]) for h in answer["hits"]] == [(d, pytest.approx(s, abs=1e-5))
                                                                       for d, s in ranked(reranked)[:K]]
    assert all(h["retriever"] == pytest.approx(retrieved[h["doc_id"]], abs=1e-5) for h in answer["hits"])


def test_the_embeddings_warmup_de_kept_are_read_as_they_are(systems, tmp_path, search_cache):
    stage = tmp_path / "warmup_de" / "0123456789ab"
    de = DualEncoder.from_pretrained(systems / "retriever")
    de.save_pretrained(stage / "model")
    dense_retrieve(de, load_corpus("rqakit/toy/train"), {}, K, emb_dir=stage / "corpus_emb")
    (stage / "config.json").write_text(json.dumps({"data": {"train": "rqakit/toy/train", "use_titles": True}}))
    answer = ask("where do otters live", retriever=str(stage / "model"), dataset="rqakit/toy/test", k=K)
    assert answer["cache"] == {"folder": str(stage / "corpus_emb"), "reused": True} and not search_cache.exists()
    untitled = ask("where do otters live", retriever=str(stage / "model"), dataset="rqakit/toy/test", k=K,
                   use_titles=False)
    assert untitled["cache"]["folder"] != str(stage / "corpus_emb")   # other passages: encoded anew


def test_a_query_id_no_split_holds_is_a_one_line_error(systems, search_cache):
    with pytest.raises(RqaError, match="query id 'nope' is in none of rqakit/toy/train, rqakit/toy/test"):
        ask(None, retriever=str(systems / "retriever"), dataset="toy", query_id="nope")

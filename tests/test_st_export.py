"""Saved retrievers and re-rankers load in sentence-transformers and compute what the kit computes."""
import hashlib
import json

import pytest
import torch

from rqakit.errors import RqaError
from rqakit.models import CrossEncoder, DualEncoder
from rqakit.models.st_export import export_sentence_transformers, st_passage
from rqakit.types import Doc, passage_text

st = pytest.importorskip("sentence_transformers")

LONG = "DNA is a molecule that carries the genetic instructions of every living organism " * 4
DOCS = [Doc("d1", "DNA", LONG), Doc("d2", "", "a passage without a title"), Doc("d3", "Cells", "cells are small")]
QUERIES = ["what is dna", "how small are the cells of the human body and why are they so small " * 2]


def digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.safetensors"))}


def kit_embeddings(de):
    with torch.no_grad():
        return de.encode_queries(de.tokenize_queries(QUERIES)), de.encode_passages(de.tokenize_passages(DOCS))


@pytest.mark.parametrize("shared,pooling,normalize", [(False, "cls", False), (True, "mean", True)])
def test_sentence_transformers_encodes_and_scores_as_the_dual_encoder(tmp_path, shared, pooling, normalize):
    de = DualEncoder.from_backbone("tiny", shared=shared, pooling=pooling, normalize=normalize, temperature=0.5,
                                   query_max_length=12, passage_max_length=24)   # both lengths truncate
    with torch.no_grad():
        de.passage_encoder.embeddings.word_embeddings.weight.mul_(1.5)  # the towers differ unless shared
    de.save_pretrained(tmp_path)
    model = st.SentenceTransformer(str(tmp_path), device="cpu")
    queries, passages = kit_embeddings(de)
    st_queries = model.encode_query(QUERIES, convert_to_tensor=True)
    st_passages = model.encode_document([st_passage(doc) for doc in DOCS], convert_to_tensor=True)
    torch.testing.assert_close(st_queries, queries, atol=1e-5, rtol=0)
    torch.testing.assert_close(st_passages, passages, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.similarity(st_queries, st_passages) / de.temperature, de.score(queries, passages),
                               atol=1e-5, rtol=0)
    if not shared:   # the two routes really use two towers
        assert not torch.allclose(model.encode_document(QUERIES, convert_to_tensor=True), st_queries)
    # the kit still loads its own folder bit for bit
    reloaded_queries, _ = kit_embeddings(DualEncoder.from_pretrained(tmp_path))
    assert torch.equal(reloaded_queries, queries)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sentence_transformers_cross_encoder_gives_the_kit_logits(tmp_path, pooling):
    ce = CrossEncoder.from_backbone("tiny", pooling=pooling, max_length=32)
    with torch.no_grad():
        ce.score_head.bias.fill_(0.25)
    ce.save_pretrained(tmp_path)
    queries = [q for q in QUERIES for _ in DOCS]
    with torch.no_grad():
        logits = ce(ce.tokenize_pairs(queries, DOCS * len(QUERIES)))
    model = st.CrossEncoder(str(tmp_path), device="cpu")
    scores = model.predict([(q, passage_text(doc)) for q, doc in zip(queries, DOCS * len(QUERIES))],
                           convert_to_tensor=True)
    torch.testing.assert_close(scores, logits, atol=1e-5, rtol=0)   # raw logits: no sigmoid
    with torch.no_grad():   # the kit still loads its own folder bit for bit
        assert torch.equal(CrossEncoder.from_pretrained(tmp_path)(ce.tokenize_pairs(queries, DOCS * len(QUERIES))), logits)


def test_export_adds_the_files_to_an_older_folder_without_touching_its_weights(tmp_path):
    de = DualEncoder.from_backbone("tiny", pooling="mean", normalize=True)
    de.save_pretrained(tmp_path)
    for name in ("modules.json", "router_config.json", "config_sentence_transformers.json"):
        (tmp_path / name).unlink()          # a folder saved before the kit wrote them
    before = digests(tmp_path)
    written = export_sentence_transformers(tmp_path)
    assert (tmp_path / "modules.json") in written and digests(tmp_path) == before
    assert json.loads((tmp_path / "router_config.json").read_text())["structure"] == {
        "query": ["query_encoder"], "document": ["passage_encoder"]}
    queries, _ = kit_embeddings(de)
    torch.testing.assert_close(st.SentenceTransformer(str(tmp_path), device="cpu").encode_query(
        QUERIES, convert_to_tensor=True), queries, atol=1e-5, rtol=0)


def test_export_refuses_a_folder_the_kit_did_not_save(tmp_path):
    with pytest.raises(RqaError, match="no rqakit.json"):
        export_sentence_transformers(tmp_path)
    (tmp_path / "rqakit.json").write_text(json.dumps({"kind": "something"}))
    with pytest.raises(RqaError, match="only a dual_encoder or cross_encoder"):
        export_sentence_transformers(tmp_path)


def test_export_command(tmp_path, capsys):
    from rqakit.cli import main

    CrossEncoder.from_backbone("tiny", max_length=32).save_pretrained(tmp_path)
    (tmp_path / "modules.json").unlink()
    assert main(["export", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "cross_encoder" and (tmp_path / "modules.json").is_file()
    assert main(["export", str(tmp_path / "missing")]) == 2

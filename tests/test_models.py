"""The dual encoder and cross encoder: inputs, pooling, score, gradients, save/load, backbones."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from rqakit.data.collection import Doc
from rqakit.errors import RqaError
from rqakit.models import CrossEncoder, DualEncoder, resolve_backbone
from rqakit.models.backbone import minilm_package_dir, tiny_backbone_dir

HELLO_WORLD_IDS = [101, 7592, 2088, 102]  # bert-base-uncased WordPiece: [CLS] hello world [SEP]
CLS, SEP = 101, 102


@pytest.fixture(scope="module", autouse=True)
def tiny_cache(tmp_path_factory):
    """Build the tiny backbone into a private cache folder for this module."""
    previous = os.environ.get("RQAKIT_CACHE")
    os.environ["RQAKIT_CACHE"] = str(tmp_path_factory.mktemp("rqakit_cache"))
    yield os.environ["RQAKIT_CACHE"]
    if previous is None:
        os.environ.pop("RQAKIT_CACHE")
    else:
        os.environ["RQAKIT_CACHE"] = previous


def word_id(tokenizer, word):
    return tokenizer.convert_tokens_to_ids(word)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert state_a[name].dtype == state_b[name].dtype, name
        assert torch.equal(state_a[name], state_b[name]), name


DOCS = [
    Doc("d1", "DNA", "DNA is a molecule that carries genetic instructions"),
    Doc("d2", "", "the cat sat"),
]
QUERIES = ["what carries genetic instructions", "cat"]


# -- backbones -----------------------------------------------------------------------------------

def test_tiny_backbone_is_deterministic_built_once_and_has_the_real_vocab(tmp_path, tiny_cache):
    folder = resolve_backbone("tiny")
    assert folder.startswith(tiny_cache)
    stamp = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    assert resolve_backbone("tiny") == folder
    assert os.path.getmtime(os.path.join(folder, "model.safetensors")) == stamp  # not rebuilt
    assert sorted(os.listdir(tiny_cache)) == [os.path.basename(folder)]  # no staging folder left

    other = tiny_backbone_dir(tmp_path)  # a second, independent build
    assert_same_state(AutoModel.from_pretrained(folder), AutoModel.from_pretrained(str(other)))
    config = AutoModel.from_pretrained(folder).config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 32, 2)
    assert (config.intermediate_size, config.max_position_embeddings, config.vocab_size) == (64, 512, 30522)
    assert AutoTokenizer.from_pretrained(folder)("Hello World")["input_ids"] == HELLO_WORLD_IDS


def test_minilm_resolves_to_the_bundled_folder_with_its_tokenizer():
    path = resolve_backbone("minilm")
    assert path == str(minilm_package_dir())
    assert AutoTokenizer.from_pretrained(path)("Hello World")["input_ids"] == HELLO_WORLD_IDS
    assert json.load(open(os.path.join(path, "config.json")))["hidden_size"] == 384


def test_short_names_and_folders(tmp_path):
    assert resolve_backbone("bert-base") == "bert-base-uncased"
    assert resolve_backbone(resolve_backbone("tiny")) == resolve_backbone("tiny")


def test_missing_or_wrong_checkpoints_raise_one_line_errors(tmp_path):
    with pytest.raises(RqaError, match=r"checkpoint folder .*nowhere does not exist"):
        resolve_backbone(str(tmp_path / "nowhere"))
    with pytest.raises(RqaError, match=r"is not a model folder: no config.json"):
        resolve_backbone(str(tmp_path))
    with pytest.raises(RqaError, match=r"does not exist"):
        DualEncoder.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(RqaError, match=r"no rqakit.json"):
        CrossEncoder.from_pretrained(tmp_path)
    DualEncoder.from_backbone("tiny", shared=True).save_pretrained(tmp_path / "de")
    with pytest.raises(RqaError, match=r"holds a dual_encoder, not a cross_encoder"):
        CrossEncoder.from_pretrained(tmp_path / "de")
    with pytest.raises(RqaError, match=r"not a model folder: no config.json; it holds a saved rqakit model"):
        CrossEncoder.from_backbone(str(tmp_path / "de"))
    with pytest.raises(RqaError, match=r"unknown pooling 'max'"):
        DualEncoder.from_backbone("tiny", pooling="max")


# -- inputs --------------------------------------------------------------------------------------

def test_passage_input_puts_sep_between_title_and_text():
    model = DualEncoder.from_backbone("tiny", shared=True)
    tok = model.tokenizer
    alpha, beta, gamma = (word_id(tok, w) for w in ("alpha", "beta", "gamma"))
    batch = model.tokenize_passages([Doc("a", "Alpha", "beta gamma"), Doc("b", "", "beta")])
    assert batch["input_ids"].tolist() == [[CLS, alpha, SEP, beta, gamma, SEP], [CLS, beta, SEP, 0, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    no_titles = model.tokenize_passages([Doc("a", "", "beta gamma")])  # as a Corpus with titles off gives it
    assert no_titles["input_ids"].tolist() == [[CLS, beta, gamma, SEP]]
    assert model.tokenize_queries(["Hello World"])["input_ids"].tolist() == [HELLO_WORLD_IDS]


def test_passage_and_query_truncation_lengths():
    model = DualEncoder.from_backbone("tiny", shared=True, query_max_length=5, passage_max_length=9)
    words = " ".join(["dna"] * 20)
    ids = model.tokenize_passages([Doc("a", words, words)])["input_ids"][0].tolist()
    assert len(ids) == 9 and ids.count(SEP) == 2 and ids[0] == CLS and ids[-1] == SEP
    assert ids.index(SEP) in (3, 4)  # longest first: title and text keep 3 + 3 (or 2 + 3) word pieces
    assert model.tokenize_queries([words])["input_ids"].shape == (1, 5)


def test_cross_encoder_input_joins_title_and_text_without_sep():
    model = CrossEncoder.from_backbone("tiny")
    tok = model.tokenizer
    alpha, beta, gamma, cat = (word_id(tok, w) for w in ("alpha", "beta", "gamma", "cat"))
    batch = model.tokenize_pairs(["cat", "cat"], [Doc("a", "Alpha", "beta gamma"), Doc("b", "", "beta")])
    assert batch["input_ids"].tolist() == [
        [CLS, cat, SEP, alpha, beta, gamma, SEP],
        [CLS, cat, SEP, beta, SEP, 0, 0],
    ]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]]
    assert model.max_length == 160


def test_cross_encoder_official_truncation_caps_query_and_passage_apart(tmp_path):
    model = CrossEncoder.from_backbone("tiny", max_length=10, query_max_length=3)
    dna, cat = word_id(model.tokenizer, "dna"), word_id(model.tokenizer, "cat")
    batch = model.tokenize_pairs(["dna dna", "dna " * 6], [Doc("a", "", "cat " * 20), Doc("b", "", "cat")])
    # passage budget 10 - 3 - 3 = 4 word pieces; a short query leaves its room unused (official reader)
    assert batch["input_ids"].tolist() == [[CLS, dna, dna, SEP, cat, cat, cat, cat, SEP],
                                           [CLS, dna, dna, dna, SEP, cat, SEP, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1, 0, 0]]
    assert batch["attention_mask"].tolist()[1] == [1] * 7 + [0, 0]
    joint = CrossEncoder.from_backbone("tiny", max_length=10)  # default: longest first, the passage takes the room
    assert joint.tokenize_pairs(["dna dna"], [Doc("a", "", "cat " * 20)])["input_ids"].tolist() == [
        [CLS, dna, dna, SEP] + [cat] * 5 + [SEP]]
    assert CrossEncoder.from_pretrained(model.save_pretrained(tmp_path / "ce")).query_max_length == 3
    with pytest.raises(RqaError, match="leaves no room for the passage"):
        CrossEncoder.from_backbone("tiny", max_length=10, query_max_length=7)


# -- pooling, score, towers, gradients ----------------------------------------------------------

@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_against_each_text_encoded_alone(pooling):
    model = DualEncoder.from_backbone("tiny", pooling=pooling)
    batch = model.tokenize_queries(QUERIES)  # different lengths: the second row is padded
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]
    with torch.no_grad():
        pooled = model.encode_queries(batch)
        for row, text in enumerate(QUERIES):
            single = model.tokenizer([text], return_tensors="pt")
            hidden = model.query_encoder(**single).last_hidden_state[0]  # (L, h), no padding
            expected = hidden[0] if pooling == "cls" else hidden.mean(dim=0)
            torch.testing.assert_close(pooled[row], expected, atol=1e-5, rtol=1e-5)


def test_score_is_the_inner_product_with_optional_cosine_and_temperature():
    torch.manual_seed(0)
    q, p = torch.randn(2, 4), torch.randn(3, 4)
    model = DualEncoder.from_backbone("tiny", shared=True)
    torch.testing.assert_close(model.score(q, p), q @ p.T)
    lists = torch.randn(2, 3, 4)  # (B, m, d): each query against its own list
    expected = torch.stack([lists[b] @ q[b] for b in range(2)])
    torch.testing.assert_close(model.score(q, lists), expected)

    cosine = DualEncoder.from_backbone("tiny", shared=True, normalize=True, temperature=0.05)
    with torch.no_grad():
        embeddings = cosine.encode_queries(cosine.tokenize_queries(QUERIES))
        raw = model.encode_queries(model.tokenize_queries(QUERIES))
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    expected_cos = torch.nn.functional.cosine_similarity(raw[0], raw[1], dim=0) / 0.05
    torch.testing.assert_close(cosine.score(embeddings[:1], embeddings[1:])[0, 0], expected_cos)


def test_separate_towers_own_their_weights_and_shared_towers_are_one():
    separate = DualEncoder.from_backbone("tiny")
    query_params = {id(p) for p in separate.query_encoder.parameters()}
    passage_params = {id(p) for p in separate.passage_encoder.parameters()}
    assert not separate.shared and not query_params & passage_params
    with torch.no_grad():
        separate.query_encoder.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(
        separate.query_encoder.embeddings.word_embeddings.weight,
        separate.passage_encoder.embeddings.word_embeddings.weight,
    )

    shared = DualEncoder.from_backbone("tiny", shared=True)
    assert shared.shared and shared.passage_encoder is shared.query_encoder
    assert len(list(shared.parameters())) == len(list(shared.query_encoder.parameters()))


def test_gradients_reach_both_towers_and_the_cross_encoder_head():
    model = DualEncoder.from_backbone("tiny").train()
    q = model.encode_queries(model.tokenize_queries(QUERIES))
    p = model.encode_passages(model.tokenize_passages(DOCS))
    model.score(q, p).sum().backward()
    for tower in (model.query_encoder, model.passage_encoder):
        assert tower.embeddings.word_embeddings.weight.grad.abs().sum() > 0

    ce = CrossEncoder.from_backbone("tiny").train()
    ce(ce.tokenize_pairs(QUERIES, DOCS)).sum().backward()
    assert ce.score_head.weight.grad.abs().sum() > 0
    assert ce.backbone.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_cross_encoder_head_init_and_mean_pooling_value():
    ce = CrossEncoder.from_backbone("tiny", pooling="mean")
    assert torch.equal(ce.score_head.bias, torch.zeros(1))
    assert ce.score_head.weight.abs().max() <= 0.04 and ce.score_head.weight.std() > 0.005
    batch = ce.tokenize_pairs(QUERIES, DOCS)
    with torch.no_grad():
        logits = ce(batch)  # eval mode: dropout off
        for row in range(2):
            mask = batch["attention_mask"][row].bool()
            single = {key: value[row:row + 1, mask] for key, value in batch.items()}
            hidden = ce.backbone(**single).last_hidden_state[0]
            expected = hidden.mean(dim=0) @ ce.score_head.weight[0] + ce.score_head.bias[0]
            torch.testing.assert_close(logits[row], expected, atol=1e-5, rtol=1e-5)


# -- save / load ---------------------------------------------------------------------------------

def saved_files(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


@pytest.mark.parametrize("shared", [False, True])
def test_dual_encoder_round_trip_is_bit_identical_and_loadable_by_transformers(tmp_path, shared):
    model = DualEncoder.from_backbone(
        "tiny", shared=shared, pooling="mean", normalize=True, temperature=0.5,
        query_max_length=16, passage_max_length=64,
    )
    with torch.no_grad():
        model.passage_encoder.embeddings.word_embeddings.weight.mul_(1.5)  # differ from the backbone
    model.save_pretrained(tmp_path)
    expected_folders = ["query_encoder"] if shared else ["passage_encoder", "query_encoder"]
    model_folders = [name for name in saved_files(tmp_path) if (tmp_path / name / "model.safetensors").is_file()]
    assert model_folders == expected_folders and "rqakit.json" in saved_files(tmp_path)
    for folder in expected_folders:
        files = saved_files(tmp_path / folder)
        assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)

    loaded = DualEncoder.from_pretrained(tmp_path)
    assert loaded.shared == shared and loaded.options() == model.options()
    assert_same_state(model, loaded)
    with torch.no_grad():
        queries, passages = model.tokenize_queries(QUERIES), model.tokenize_passages(DOCS)
        assert torch.equal(model.encode_queries(queries), loaded.encode_queries(queries))
        assert torch.equal(model.encode_passages(passages), loaded.encode_passages(passages))
        tower_folder = tmp_path / expected_folders[0]
        plain = AutoModel.from_pretrained(tower_folder)
        plain_ids = AutoTokenizer.from_pretrained(tower_folder)(DOCS[0].text, return_tensors="pt")
        assert torch.equal(
            plain(**plain_ids).last_hidden_state, model.passage_encoder(**plain_ids).last_hidden_state
        )


def test_cross_encoder_round_trip_and_plain_transformers_recipe(tmp_path):
    model = CrossEncoder.from_backbone("tiny", max_length=64)
    with torch.no_grad():
        model.score_head.bias.fill_(0.25)
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "score_head.safetensors", "rqakit.json"} <= set(saved_files(tmp_path))
    loaded = CrossEncoder.from_pretrained(tmp_path)
    assert loaded.options() == model.options()
    assert_same_state(model, loaded)
    batch = model.tokenize_pairs(QUERIES, DOCS)
    with torch.no_grad():
        logits = model(batch)
        assert torch.equal(logits, loaded(batch))
        # the module docstring's recipe: transformers + safetensors only
        tok, backbone = AutoTokenizer.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)
        head = load_file(str(tmp_path / "score_head.safetensors"))
        plain = tok([QUERIES[0]], ["DNA DNA is a molecule that carries genetic instructions"],
                    truncation="longest_first", max_length=64, return_tensors="pt")
        h = backbone(**plain).last_hidden_state[:, 0]
        manual = (h @ head["weight"].T + head["bias"])[0, 0]
    torch.testing.assert_close(manual, logits[0], atol=1e-6, rtol=1e-6)


def test_a_backbone_missing_offline_is_a_one_line_error(tmp_path, monkeypatch):
    from rqakit.errors import RqaError
    from rqakit.models.backbone import load_encoder, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))          # an empty cache
    for load in (load_encoder, load_tokenizer):
        with pytest.raises(RqaError, match="neither a local folder nor in the Hugging Face cache"):
            load("rqakit-test/no-such-model")

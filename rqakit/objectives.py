"""What each training stage optimises, as modules whose `forward(batch)` returns the loss.

Wrapping the towers and the loss in one module gives the training loop (and DDP) a single
forward to call. Every `collate_*` turns a micro-batch of plain examples into tensors.

    warmup_de   InBatchRetriever     RocketQA step 1: in-batch (+ cross-process) negatives
    warmup_ce   ListwiseReranker     RocketQA step 2 (kit default): listwise CE, positive at index 0
                PointwiseReranker    RocketQA step 2 as v1 trained it: each pair classified on its own
    joint       JointDistillation    RocketQAv2 Eq. 6: L_sup (re-ranker) + L_KL (retriever)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .losses import cross_batch_listwise_loss, joint_loss, listwise_ce_loss, pointwise_bce_loss
from .runtime import gather_with_grad
from .types import Doc


@dataclass
class ListExample:
    """One training list: a query and m passages, the positive at index 0 (official reader)."""

    query: str
    docs: list[Doc]
    teacher_scores: list[float] | None = None  # static distillation: CE logits scored once


class InBatchRetriever(nn.Module):
    """RocketQA step 1 (DPR recipe): each query against its positive, its BM25 hard negative and
    every other passage of the global batch (gathered across processes)."""

    def __init__(self, dual_encoder):
        super().__init__()
        self.de = dual_encoder

    def collate(self, examples: list[ListExample]) -> dict:
        return {"q": self.de.tokenize_queries([e.query for e in examples]),
                "p": self.de.tokenize_passages([d for e in examples for d in e.docs]),
                "k": len(examples[0].docs)}

    def forward(self, batch: dict) -> dict:
        q = self.de.encode_queries(batch["q"]).float()                                  # (B, d)
        p = self.de.encode_passages(batch["p"]).float().view(q.shape[0], batch["k"], -1)  # (B, k, d)
        p_all, offset = gather_with_grad(p)                                              # (W*B, k, d)
        loss = cross_batch_listwise_loss(q / self.de.temperature, p_all, offset)
        return {"loss": loss}


class ListwiseReranker(nn.Module):
    """RocketQA step 2, listwise: softmax cross-entropy over each list, positive at index 0."""

    def __init__(self, cross_encoder):
        super().__init__()
        self.ce = cross_encoder

    def collate(self, examples: list[ListExample]) -> dict:
        m = len(examples[0].docs)
        return {"pairs": self.ce.tokenize_pairs([e.query for e in examples for _ in range(m)],
                                                [d for e in examples for d in e.docs]),
                "shape": (len(examples), m)}

    def forward(self, batch: dict) -> dict:
        scores = self.ce(batch["pairs"]).float().view(*batch["shape"])  # (B, m)
        return {"loss": listwise_ce_loss(scores), "acc": (scores.argmax(-1) == 0).float().mean()}


class PointwiseReranker(ListwiseReranker):
    """RocketQA step 2 as the official v1 code trains it: every (query, passage) pair of a list on
    its own, positive (index 0) 1 and negatives 0, binary cross-entropy averaged over the B*m
    pairs. v1's two-class softmax gives p = sigmoid(z1 - z0); one logit s gives p = sigmoid(s),
    the probability that `augment.calibration: sigmoid` reads."""

    def forward(self, batch: dict) -> dict:
        scores = self.ce(batch["pairs"]).float().view(*batch["shape"])  # (B, m)
        return {"loss": pointwise_bce_loss(scores), "acc": (scores.argmax(-1) == 0).float().mean()}


class JointDistillation(nn.Module):
    """Dynamic listwise distillation (§1.3–§1.4): both towers see the same lists.

    The query is encoded once per list (the official code re-encodes it m times, one per row),
    passages once per row: s_de (B, m) = E_Q(q)·E_P(p); s_ce (B, m) = the re-ranker's logits.
    `static=True` freezes the re-ranker and distils from `teacher_scores` computed once (Table 4);
    with `teacher_dropout` as well, the frozen re-ranker (`teacher`, no gradient) scores every
    list at every step in the loop's train mode, dropout on: the noise of a dynamic teacher
    without its learning.
    """

    def __init__(self, dual_encoder, cross_encoder=None, *, static: bool = False, ce_loss: str = "listwise",
                 kl_direction: str = "code", kl_grad_to_ce: bool = False, kl_reduction: str = "mean",
                 in_batch: bool = False, teacher_dropout: bool = False, teacher_temperature: float = 1.0):
        super().__init__()
        self.de = dual_encoder
        self.static = static
        self.ce = None if static else cross_encoder
        if static and teacher_dropout:
            self.teacher = cross_encoder.requires_grad_(False)
        self.loss_options = dict(ce_loss=ce_loss, kl_direction=kl_direction, kl_grad_to_ce=kl_grad_to_ce,
                                 kl_reduction=kl_reduction, train_ce=not static,
                                 teacher_temperature=teacher_temperature)
        self.in_batch = in_batch

    @property
    def rescores(self) -> bool:
        """The re-ranker scores every list at every step (dynamic, or a frozen teacher in train mode)."""
        return self.ce is not None or hasattr(self, "teacher")

    def collate(self, examples: list[ListExample]) -> dict:
        m = len(examples[0].docs)
        batch = {"q": self.de.tokenize_queries([e.query for e in examples]),
                 "p": self.de.tokenize_passages([d for e in examples for d in e.docs]),
                 "shape": (len(examples), m)}
        if self.rescores:
            ce = self.ce if self.ce is not None else self.teacher
            batch["pairs"] = ce.tokenize_pairs([e.query for e in examples for _ in range(m)],
                                               [d for e in examples for d in e.docs])
        else:
            batch["teacher"] = torch.tensor([e.teacher_scores for e in examples], dtype=torch.float32)
        return batch

    def forward(self, batch: dict) -> dict:
        b, m = batch["shape"]
        q = self.de.encode_queries(batch["q"]).float()                 # (B, d)
        p = self.de.encode_passages(batch["p"]).float().view(b, m, -1)  # (B, m, d)
        s_de = self.de.score(q, p)                                      # (B, m)
        if "teacher" in batch:
            s_ce = batch["teacher"].to(s_de.device)                     # (B, m), constant
        elif self.static:
            with torch.no_grad():                                       # frozen, dropout on
                s_ce = self.teacher(batch["pairs"]).float().view(b, m)  # (B, m)
        else:
            s_ce = self.ce(batch["pairs"]).float().view(b, m)           # (B, m)
        out = joint_loss(s_de, s_ce, **self.loss_options)
        if self.in_batch:  # the retriever loss of InBatchRetriever, over every process's lists
            p_all, offset = gather_with_grad(p)                          # (W*B, m, d)
            out["in_batch"] = cross_batch_listwise_loss(q / self.de.temperature, p_all, offset)
            out["loss"] = out["loss"] + out["in_batch"]
        out["acc_ce"] = (s_ce.argmax(-1) == 0).float().mean()
        out["acc_de"] = (s_de.argmax(-1) == 0).float().mean()
        return out

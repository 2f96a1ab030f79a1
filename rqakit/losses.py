"""RocketQAv2 training losses (Ren et al., EMNLP 2021, Eq. 2-6) as pure torch functions.

Every list score tensor is (B, m): B queries, each with a list of m passages whose positive
sits at index 0, as in the official code (`joint_encoder.py`, labels are all 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rqakit.config import check_choice
from rqakit.errors import RqaError


def _check_lists(scores: torch.Tensor, name: str) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.numel() == 0:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise RqaError(f"{name} must be a non-empty (B, m) tensor of list scores, got {shape}")


def listwise_ce_loss(ce_scores: torch.Tensor) -> torch.Tensor:
    """Re-ranker supervised listwise loss L_sup (Eq. 5): mean_b -log softmax(s_ce[b])[0].

    ce_scores: (B, m) CE logits, positive at index 0 -> scalar.
    """
    _check_lists(ce_scores, "ce_scores")
    positive_index = torch.zeros(ce_scores.shape[0], dtype=torch.long, device=ce_scores.device)
    return F.cross_entropy(ce_scores, positive_index)


def _reduce_kl(pointwise_kl: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":  # Paddle kldiv_loss default: average over all B*m elements
        return pointwise_kl.mean()
    return pointwise_kl.sum() / pointwise_kl.shape[0]  # per-query KL averaged over B


def distillation_kl(
    de_scores: torch.Tensor,
    ce_scores: torch.Tensor,
    direction: str = "code",
    grad_to_ce: bool = False,
    reduction: str = "mean",
    teacher_temperature: float = 1.0,
) -> torch.Tensor:
    """KL between the listwise DE and CE distributions (Eq. 4).

    de_scores, ce_scores: (B, m) -> scalar.
    direction "code": KL(P_ce || P_de) = sum P_ce (log P_ce - log P_de), the official code
    (Paddle kldiv_loss with the CE softmax as target); "paper": KL(P_de || P_ce), Eq. 4 as printed.
    grad_to_ce False: CE scores are detached (Paddle kldiv_loss has no Target gradient), so only
    the retriever learns from this term; True: the gradient reaches both.
    reduction "mean": average over the B*m elements (official code); "batchmean": sum / B.
    teacher_temperature T: P_ce = softmax(ce_scores / T) (paper: T = 1; T > 1 gives softer
    targets, an extension; the retriever keeps its own scale).
    """
    _check_lists(de_scores, "de_scores")
    _check_lists(ce_scores, "ce_scores")
    if de_scores.shape != ce_scores.shape:
        raise RqaError(
            f"de_scores {tuple(de_scores.shape)} and ce_scores {tuple(ce_scores.shape)} "
            "must have the same (B, m) shape"
        )
    check_choice("joint.kl_direction", direction)
    check_choice("joint.kl_reduction", reduction)
    if not grad_to_ce:
        ce_scores = ce_scores.detach()
    log_p_de = F.log_softmax(de_scores, dim=-1)  # (B, m)
    log_p_ce = F.log_softmax(ce_scores / teacher_temperature, dim=-1)  # (B, m)
    if direction == "code":
        target_log_probs, input_log_probs = log_p_ce, log_p_de
    else:
        target_log_probs, input_log_probs = log_p_de, log_p_ce
    pointwise_kl = F.kl_div(input_log_probs, target_log_probs, reduction="none", log_target=True)
    return _reduce_kl(pointwise_kl, reduction)  # pointwise_kl: (B, m)


def _default_pointwise_labels(ce_scores: torch.Tensor) -> torch.Tensor:
    labels = torch.zeros_like(ce_scores)
    labels[:, 0] = 1.0
    return labels


def pointwise_bce_loss(ce_scores: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Pointwise re-ranker loss for the Table 4 "w/ Pointwise" ablation.

    ce_scores: (B, m) CE logits; labels: (B, m) in [0, 1], default 1 at index 0 and 0 elsewhere.
    Binary cross-entropy with logits per (query, passage) pair, averaged over B*m -> scalar.
    """
    _check_lists(ce_scores, "ce_scores")
    if labels is None:
        labels = _default_pointwise_labels(ce_scores)
    elif not isinstance(labels, torch.Tensor) or labels.shape != ce_scores.shape:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise RqaError(f"labels must match ce_scores {tuple(ce_scores.shape)}, got {shape}")
    return F.binary_cross_entropy_with_logits(ce_scores, labels.to(ce_scores.dtype))


def in_batch_scores(q_emb: torch.Tensor, p_emb: torch.Tensor) -> torch.Tensor:
    """Inner products of every query with every passage of the batch (in-batch negatives).

    q_emb: (B, d); p_emb: (B, m, d) -> (B, B*m); the positive of query b is at column b*m.
    """
    if q_emb.dim() != 2 or p_emb.dim() != 3:
        raise RqaError(
            f"expected q_emb (B, d) and p_emb (B, m, d), "
            f"got {tuple(q_emb.shape)} and {tuple(p_emb.shape)}"
        )
    if p_emb.shape[0] != q_emb.shape[0] or p_emb.shape[2] != q_emb.shape[1]:
        raise RqaError(
            f"q_emb {tuple(q_emb.shape)} and p_emb {tuple(p_emb.shape)} disagree on B or d"
        )
    all_passages = p_emb.reshape(-1, p_emb.shape[-1])  # (B*m, d)
    return q_emb @ all_passages.T  # (B, B*m)


def in_batch_listwise_loss(q_emb: torch.Tensor, p_emb: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all B*m passages of the batch with target b*m (DPR / RocketQA step 1).

    q_emb: (B, d); p_emb: (B, m, d) -> scalar. Optional in-batch term, off in joint training.
    """
    scores = in_batch_scores(q_emb, p_emb)  # (B, B*m)
    batch_size, list_size = p_emb.shape[0], p_emb.shape[1]
    positive_columns = torch.arange(batch_size, device=scores.device) * list_size  # (B,)
    return F.cross_entropy(scores, positive_columns)


def joint_loss(
    de_scores: torch.Tensor,
    ce_scores: torch.Tensor,
    *,
    kl_direction: str = "code",
    kl_grad_to_ce: bool = False,
    kl_reduction: str = "mean",
    ce_loss: str = "listwise",
    train_ce: bool = True,
    teacher_temperature: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Dynamic listwise distillation loss L_final = L_sup + L_KL (Eq. 6, weights 1:1 as the code).

    de_scores, ce_scores: (B, m) -> {"loss", "sup", "kl"} scalar tensors.
    ce_loss "listwise" (Eq. 5) or "pointwise" (BCE ablation; the KL still uses the listwise
    softmax of the CE scores, footnote 3). train_ce False is static distillation: sup is zero
    and the teacher is detached whatever kl_grad_to_ce says.
    """
    check_choice("joint.ce_loss", ce_loss)
    kl = distillation_kl(
        de_scores,
        ce_scores,
        direction=kl_direction,
        grad_to_ce=kl_grad_to_ce and train_ce,
        reduction=kl_reduction,
        teacher_temperature=teacher_temperature,
    )
    if not train_ce:
        sup = kl.new_zeros(())
    elif ce_loss == "listwise":
        sup = listwise_ce_loss(ce_scores)
    else:
        sup = pointwise_bce_loss(ce_scores)
    return {"loss": sup + kl, "sup": sup, "kl": kl}


def cross_batch_listwise_loss(q_emb: torch.Tensor, p_all: torch.Tensor, query_offset: int = 0) -> torch.Tensor:
    """In-batch loss over passages gathered from every process (RocketQA's cross-batch negatives).

    q_emb: (B, d) this process's queries; p_all: (N, k, d) the lists of all N >= B queries of the
    global batch, this process's own lists at rows query_offset .. query_offset + B - 1 -> scalar.
    The positive of local query b is passage 0 of list query_offset + b, i.e. column
    (query_offset + b) * k of the (B, N*k) score matrix. With one process this is
    `in_batch_listwise_loss`.
    """
    if q_emb.dim() != 2 or p_all.dim() != 3 or p_all.shape[-1] != q_emb.shape[-1]:
        raise RqaError(f"expected q_emb (B, d) and p_all (N, k, d), got {tuple(q_emb.shape)} and {tuple(p_all.shape)}")
    if query_offset < 0 or query_offset + q_emb.shape[0] > p_all.shape[0]:
        raise RqaError(f"query_offset {query_offset} + {q_emb.shape[0]} queries exceeds the {p_all.shape[0]} gathered lists")
    scores = q_emb @ p_all.reshape(-1, p_all.shape[-1]).T  # (B, N*k)
    targets = (torch.arange(q_emb.shape[0], device=scores.device) + query_offset) * p_all.shape[1]  # (B,)
    return F.cross_entropy(scores, targets)

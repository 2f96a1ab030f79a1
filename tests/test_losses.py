"""RocketQAv2 losses (Eq. 2-6) on hand-computed lists, with the gradients that must and must not flow."""

import math

import pytest
import torch

from rqakit.errors import RqaError
from rqakit.losses import (
    distillation_kl,
    in_batch_listwise_loss,
    in_batch_scores,
    joint_loss,
    listwise_ce_loss,
    pointwise_bce_loss,
)

# Two queries, m = 3 passages each, positive at index 0.
DE_LISTS = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
CE_LISTS = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def _softmax(row):
    total = sum(math.exp(s) for s in row)
    return [math.exp(s) / total for s in row]


def _kl(target_row, input_row):
    """KL(softmax(target) || softmax(input)) for one list, by hand."""
    p, q = _softmax(target_row), _softmax(input_row)
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


def _tensor(rows, requires_grad=False):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def test_listwise_ce_loss_eq5_on_hand_computed_lists():
    # query 0: -log e^2 / (e^2 + 1 + 1); query 1: -log 1 / (1 + e + 1)
    expected = (-(2.0 - math.log(math.exp(2.0) + 2.0)) + math.log(2.0 + math.e)) / 2
    assert listwise_ce_loss(_tensor(CE_LISTS)).item() == pytest.approx(expected, abs=1e-12)
    assert listwise_ce_loss(_tensor([[2.0, 0.0, 0.0]])).item() == pytest.approx(0.2395447, abs=1e-6)


def test_kl_code_direction_is_kl_ce_to_de_with_both_reductions():
    per_query = [_kl(CE_LISTS[b], DE_LISTS[b]) for b in range(2)]
    de, ce = _tensor(DE_LISTS), _tensor(CE_LISTS)
    batchmean = distillation_kl(de, ce, direction="code", reduction="batchmean").item()
    mean = distillation_kl(de, ce, direction="code", reduction="mean").item()
    assert batchmean == pytest.approx(sum(per_query) / 2, abs=1e-12)
    assert mean == pytest.approx(sum(per_query) / 6, abs=1e-12)
    assert mean == pytest.approx(batchmean / 3, abs=1e-12)


def test_kl_paper_direction_is_kl_de_to_ce_as_eq4_is_written():
    per_query = [_kl(DE_LISTS[b], CE_LISTS[b]) for b in range(2)]
    de, ce = _tensor(DE_LISTS), _tensor(CE_LISTS)
    batchmean = distillation_kl(de, ce, direction="paper", reduction="batchmean").item()
    mean = distillation_kl(de, ce, direction="paper", reduction="mean").item()
    assert batchmean == pytest.approx(sum(per_query) / 2, abs=1e-12)
    assert mean == pytest.approx(sum(per_query) / 6, abs=1e-12)
    code = distillation_kl(de, ce, direction="code", reduction="batchmean").item()
    assert abs(batchmean - code) > 1e-3  # KL is not symmetric: the two readings differ


def test_kl_on_one_list_by_hand():
    # P_ce = (e^2, 1, 1) / (e^2 + 2); P_de = (1, 1, 1) / 3
    z = math.exp(2.0) + 2.0
    p_ce = [math.exp(2.0) / z, 1.0 / z, 1.0 / z]
    expected = sum(p * math.log(p * 3.0) for p in p_ce)
    got = distillation_kl(_tensor([[0.0, 0.0, 0.0]]), _tensor([[2.0, 0.0, 0.0]]), reduction="batchmean")
    assert got.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("direction", ["code", "paper"])
def test_kl_zero_for_equal_distributions_and_positive_otherwise(direction):
    scores = _tensor(CE_LISTS)
    shifted = scores + _tensor([[5.0], [-3.0]])  # same softmax per list
    assert distillation_kl(shifted, scores, direction=direction).item() == pytest.approx(0.0, abs=1e-12)
    assert distillation_kl(_tensor(DE_LISTS), scores, direction=direction).item() > 1e-3


@pytest.mark.parametrize("direction", ["code", "paper"])
def test_kl_invariant_to_a_constant_added_to_a_list(direction):
    de, ce = _tensor(DE_LISTS), _tensor(CE_LISTS)
    base = distillation_kl(de, ce, direction=direction).item()
    offsets = _tensor([[7.0], [-2.5]])
    assert distillation_kl(de + offsets, ce, direction=direction).item() == pytest.approx(base, abs=1e-12)
    assert distillation_kl(de, ce - offsets, direction=direction).item() == pytest.approx(base, abs=1e-12)


def test_pointwise_bce_on_hand_computed_lists():
    # label 1 at index 0: log(1 + e^-s); label 0 elsewhere: log(1 + e^s)
    terms = [
        math.log(1 + math.exp(-2.0)), math.log(2.0), math.log(2.0),
        math.log(2.0), math.log(1 + math.e), math.log(2.0),
    ]
    expected = sum(terms) / 6
    assert pointwise_bce_loss(_tensor(CE_LISTS)).item() == pytest.approx(expected, abs=1e-12)


def test_pointwise_bce_with_explicit_labels():
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0) + math.log(2.0)) / 3
    got = pointwise_bce_loss(_tensor([[2.0, 0.0, 0.0]]), labels)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_default_kl_trains_only_the_retriever():
    de, ce = _tensor(DE_LISTS, True), _tensor(CE_LISTS, True)
    distillation_kl(de, ce).backward()
    assert de.grad is not None and de.grad.abs().sum() > 0
    assert ce.grad is None or ce.grad.abs().sum() == 0


@pytest.mark.parametrize("direction", ["code", "paper"])
def test_kl_with_grad_to_ce_reaches_both(direction):
    de, ce = _tensor(DE_LISTS, True), _tensor(CE_LISTS, True)
    distillation_kl(de, ce, direction=direction, grad_to_ce=True).backward()
    assert de.grad.abs().sum() > 0
    assert ce.grad.abs().sum() > 0


def test_kl_gradient_matches_closed_form():
    # d KL(P_ce || P_de) / d s_de = (P_de - P_ce) / (B * m) with the element mean
    de, ce = _tensor(DE_LISTS, True), _tensor(CE_LISTS)
    distillation_kl(de, ce, reduction="mean").backward()
    expected = [
        [(pd - pc) / 6 for pd, pc in zip(_softmax(DE_LISTS[b]), _softmax(CE_LISTS[b]))]
        for b in range(2)
    ]
    assert torch.allclose(de.grad, _tensor(expected), atol=1e-12)


def test_kl_gradient_batchmean_is_m_times_mean():
    grads = {}
    for reduction in ("mean", "batchmean"):
        de = _tensor(DE_LISTS, True)
        distillation_kl(de, _tensor(CE_LISTS), reduction=reduction).backward()
        grads[reduction] = de.grad
    assert torch.allclose(grads["batchmean"], 3 * grads["mean"], atol=1e-12)


def test_joint_loss_is_sup_plus_kl_and_ce_learns_only_from_sup():
    de, ce = _tensor(DE_LISTS, True), _tensor(CE_LISTS, True)
    parts = joint_loss(de, ce)
    assert parts["loss"].item() == pytest.approx(parts["sup"].item() + parts["kl"].item(), abs=1e-12)
    assert parts["sup"].item() == pytest.approx(listwise_ce_loss(_tensor(CE_LISTS)).item(), abs=1e-12)
    assert parts["kl"].item() == pytest.approx(
        distillation_kl(_tensor(DE_LISTS), _tensor(CE_LISTS)).item(), abs=1e-12
    )
    parts["loss"].backward()
    # CE gradient of Eq. 5 alone: (softmax(s_ce) - onehot(0)) / B
    expected_ce_grad = [
        [p - (1.0 if i == 0 else 0.0) for i, p in enumerate(_softmax(row))] for row in CE_LISTS
    ]
    assert torch.allclose(ce.grad, _tensor(expected_ce_grad) / 2, atol=1e-12)
    assert de.grad.abs().sum() > 0


def test_joint_loss_pointwise_keeps_listwise_kl():
    parts = joint_loss(_tensor(DE_LISTS), _tensor(CE_LISTS), ce_loss="pointwise")
    assert parts["sup"].item() == pytest.approx(pointwise_bce_loss(_tensor(CE_LISTS)).item(), abs=1e-12)
    expected_kl = sum(_kl(CE_LISTS[b], DE_LISTS[b]) for b in range(2)) / 6
    assert parts["kl"].item() == pytest.approx(expected_kl, abs=1e-12)


@pytest.mark.parametrize("kl_grad_to_ce", [False, True])
def test_static_distillation_gives_the_teacher_no_gradient(kl_grad_to_ce):
    de, ce = _tensor(DE_LISTS, True), _tensor(CE_LISTS, True)
    parts = joint_loss(de, ce, train_ce=False, kl_grad_to_ce=kl_grad_to_ce)
    assert parts["sup"].item() == 0.0
    assert parts["loss"].item() == pytest.approx(parts["kl"].item(), abs=1e-12)
    parts["loss"].backward()
    assert ce.grad is None
    assert de.grad.abs().sum() > 0


def test_in_batch_scores_put_the_positive_of_query_b_at_column_b_times_m():
    q_emb = _tensor([[1.0, 0.0], [0.0, 1.0]])  # (B=2, d=2)
    p_emb = _tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]]])  # (B=2, m=2, d=2)
    scores = in_batch_scores(q_emb, p_emb)
    assert scores.tolist() == [[1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 2.0, 0.0]]
    assert scores[0, 0].item() == 1.0  # q0 . its positive p[0, 0]
    assert scores[1, 2].item() == 2.0  # q1 . its positive p[1, 0]


def test_in_batch_listwise_loss_by_hand():
    q_emb = _tensor([[1.0, 0.0], [0.0, 1.0]])
    p_emb = _tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]]])
    loss_q0 = -(1.0 - math.log(math.exp(1.0) + 1.0 + 1.0 + math.exp(3.0)))
    loss_q1 = -(2.0 - math.log(1.0 + 1.0 + math.exp(2.0) + 1.0))
    got = in_batch_listwise_loss(q_emb, p_emb).item()
    assert got == pytest.approx((loss_q0 + loss_q1) / 2, abs=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: distillation_kl(_tensor(DE_LISTS), _tensor(CE_LISTS), direction="reverse"),
        lambda: distillation_kl(_tensor(DE_LISTS), _tensor(CE_LISTS), reduction="sum"),
        lambda: distillation_kl(_tensor(DE_LISTS), _tensor([[1.0, 2.0]])),
        lambda: distillation_kl(_tensor([1.0, 2.0]), _tensor([1.0, 2.0])),
        lambda: listwise_ce_loss(_tensor([0.0, 1.0])),
        lambda: listwise_ce_loss(torch.zeros(2, 0)),
        lambda: pointwise_bce_loss(_tensor(CE_LISTS), torch.ones(2, 2)),
        lambda: joint_loss(_tensor(DE_LISTS), _tensor(CE_LISTS), ce_loss="pairwise"),
        lambda: joint_loss(_tensor(DE_LISTS), _tensor(CE_LISTS), kl_direction="both"),
        lambda: in_batch_scores(torch.zeros(2, 4), torch.zeros(2, 3, 5)),
        lambda: in_batch_scores(torch.zeros(2, 4), torch.zeros(3, 3, 4)),
        lambda: in_batch_listwise_loss(torch.zeros(2, 4), torch.zeros(2, 4)),
    ],
)
def test_bad_arguments_raise_rqa_error(call):
    with pytest.raises(RqaError) as excinfo:
        call()
    assert "\n" not in str(excinfo.value)


def test_a_teacher_temperature_softens_only_the_targets():
    """P_ce = softmax(s_ce / T); the retriever's distribution keeps its own scale (by hand, T = 2)."""
    de, ce = _tensor([[0.0, 0.0, 0.0]]), _tensor([[2.0, 0.0, 0.0]])
    z = math.exp(1.0) + 2.0                                  # softmax((1, 0, 0))
    p_ce = [math.exp(1.0) / z, 1.0 / z, 1.0 / z]
    expected = sum(p * math.log(p * 3.0) for p in p_ce)
    got = distillation_kl(de, ce, reduction="batchmean", teacher_temperature=2.0)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    plain = distillation_kl(de, ce, reduction="batchmean")
    assert got.item() < plain.item()                         # softer targets, nearer the uniform student
    joint = joint_loss(de, ce, kl_reduction="batchmean", teacher_temperature=2.0)
    assert joint["kl"].item() == pytest.approx(expected, abs=1e-12)
    assert joint["sup"].item() == pytest.approx(-math.log(math.exp(2.0) / (math.exp(2.0) + 2.0)), abs=1e-12)

"""Calibration: a cross-encoder logit -> a probability of relevance, for the denoising thresholds.

    calibrator = Calibrator("platt", prior=0.2).fit(*labelled_pairs(split, ce_scores))
    calibrator.probability([2.1, -0.3])

`platt` fits a sigmoid to the labelled pairs (weighted to a positive rate `prior`, since v1's
0.1 / 0.9 were set on a classifier trained at 1:4); `sigmoid` reads a pointwise CE's own
probability; `rank` thresholds by CE rank instead (`rqakit.mining.lists`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from rqakit.config import CHOICES
from rqakit.data.collection import Split
from rqakit.errors import RqaError

CALIBRATION_METHODS = CHOICES["augment.calibration"]

def _platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt (1999) smoothed targets: (N+ + 1)/(N+ + 2) and 1/(N- + 2); keeps a finite on separable data."""
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    return np.where(labels == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def _platt_loss(params: np.ndarray, logits: np.ndarray, targets: np.ndarray,
                weights: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted mean log loss of p = sigmoid(a*logit + b) and its gradient in (a, b); weights (N,) sum to N."""
    z = params[0] * logits + params[1]                              # (N,)
    loss = np.mean(weights * (np.logaddexp(0.0, z) - targets * z))
    residual = weights * (expit(z) - targets)                       # (N,)
    return float(loss), np.array([np.mean(residual * logits), np.mean(residual)])


def _prior_weights(labels: np.ndarray, prior: float | None) -> np.ndarray:
    """(N,) weights that make the positives `prior` of the total weight (1 everywhere for None).

    A logistic fit inherits its fitting set's positive rate in the intercept: the logit at p = 0.9
    moves by log(49/4) ~ 2.5 between 1:4 and 1:49 pairs. Reweighting to a fixed prior removes
    that (label shift): the fit describes a CE trained at that rate, whatever was scored.
    """
    if prior is None:
        return np.ones_like(labels)
    rate = labels.mean()
    return np.where(labels == 1, prior / rate, (1.0 - prior) / (1.0 - rate))


@dataclass
class Calibrator:
    """Maps CE logits to probabilities so the v1 thresholds (set on a 2-class softmax) apply.

    method "platt": p = sigmoid(a*logit + b), fitted on labelled candidate pairs (a listwise CE's
    logits are shift-invariant, so they are not probabilities), weighted so that positives carry
    `prior` of the weight: the probabilities then do not depend on how many labelled positives the
    scored window happens to hold (None: the pairs' own rate). 0.2 is the rate of RocketQA v1's
    step-2 training data (1 positive : 4 negatives), the classifier whose output 0.1 / 0.9 were
    set on. "sigmoid": p = sigmoid(logit), the CE's own two-class probability (a pointwise CE);
    "rank": no probabilities, `build_lists` uses the CE-rank rule instead.
    """

    method: str = "platt"
    a: float | None = None
    b: float | None = None
    prior: float | None = None
    max_iter: int = field(default=500, repr=False)

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise RqaError(f"unknown calibration method {self.method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
        if self.prior is not None and not 0.0 < self.prior < 1.0:
            raise RqaError(f"calibration prior {self.prior} must be between 0 and 1 (exclusive), or None")

    @property
    def gives_probabilities(self) -> bool:
        return self.method != "rank"

    @property
    def is_fitted(self) -> bool:
        return self.method != "platt" or (self.a is not None and self.b is not None)

    def fit(self, logits, labels) -> "Calibrator":
        """Fit (a, b) by L-BFGS on the log loss (platt); a no-op for sigmoid and rank.

        logits: (N,) CE logits of candidate pairs; labels: (N,) 1 = in qrels, 0 = retrieved, unlabelled.
        """
        if self.method != "platt":
            return self
        logits, labels = _check_pairs(logits, labels)
        args = (logits, _platt_targets(labels), _prior_weights(labels, self.prior))
        result = minimize(_platt_loss, x0=np.array([1.0, 0.0]), args=args,
                          jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        a, b = (float(v) for v in result.x)
        if not a > 0:
            raise RqaError(f"Platt fit gave slope a = {a:.4g} <= 0: the cross-encoder does not score labelled "
                           "positives above unlabelled candidates; check the warm cross-encoder")
        self.a, self.b = a, b
        return self

    def __call__(self, logits) -> np.ndarray:
        """(N,) logits -> (N,) probabilities in (0, 1)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.method == "rank":
            raise RqaError("calibration method 'rank' gives no probabilities; build_lists uses CE ranks instead")
        if self.method == "sigmoid":
            return expit(logits)
        if not self.is_fitted:
            raise RqaError("Platt calibrator is not fitted: call fit(logits, labels) on labelled candidate pairs first")
        return expit(self.a * logits + self.b)

    def logit_at(self, prob: float) -> float:
        """The CE logit whose calibrated probability is `prob` (where a threshold falls)."""
        if self.method == "rank" or not self.is_fitted:
            raise RqaError("logit_at needs a fitted probability calibration (platt or sigmoid)")
        z = math.log(prob / (1.0 - prob))
        return z if self.method == "sigmoid" else (z - self.b) / self.a

    def to_dict(self) -> dict:
        return {"method": self.method, "a": self.a, "b": self.b, "prior": self.prior}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        return cls(method=d["method"], a=d.get("a"), b=d.get("b"), prior=d.get("prior"))


def _check_pairs(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if logits.size != labels.size or logits.size == 0:
        raise RqaError(f"Platt fit needs as many labels as logits (got {logits.size} logits, {labels.size} labels)")
    if not np.isin(labels, (0, 1)).all():
        raise RqaError("Platt labels must be 0 (retrieved, unlabelled) or 1 (in qrels)")
    if labels.min() == labels.max():
        raise RqaError("Platt fit needs both labelled positives and unlabelled candidates among the scored pairs")
    if not np.isfinite(logits).all():
        raise RqaError("Platt fit got non-finite CE logits; check the cross-encoder scores")
    return logits, labels.astype(np.float64)


def labelled_pairs(split: Split, ce_scores: dict[str, dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of every scored (query, candidate) pair: label 1 if in the qrels, else 0.

    Queries without a labelled positive are left out, as in `build_lists`. Returns (N,), (N,).
    """
    logits, labels = [], []
    for qid in sorted(ce_scores):
        positives = set(split.positives(qid))
        if not positives:
            continue
        for doc_id, score in ce_scores[qid].items():
            logits.append(float(score))
            labels.append(int(doc_id in positives))
    return np.array(logits, dtype=np.float64), np.array(labels, dtype=np.int64)


"""Denoising audit: does the re-ranker's denoising find positives the labels miss?

Hybrid data augmentation (§4.3) drops retrieved candidates the warm re-ranker scores too high to be
negatives (likely false negatives). Its quality cannot be read from the qrels, which is why it is
measured against known unlabelled positives. Any collection with queries that have two or more
labelled positives provides them: hide one positive of each such query from the labels the miner
sees, run the denoising (`rqakit.mining.denoise`, the rule `build_lists` applies in `augment`),
and count

    recall    = hidden positives dropped / hidden positives in the scored window
    precision = hidden positives dropped / candidates dropped (on the audited queries)

at every negative threshold t (a scored, unlabelled candidate whose calibrated probability is
>= t is not kept as a negative; v1: t = 0.1). "kept out" adds the pseudo-positives (a hidden
positive promoted to lead a denoised list is also no negative).

    visible, hidden = hide_one_positive(split, seed=0)
    curve = audit_curve(visible, hidden, candidates, ce_scores)     # one row per threshold
    run_audit(load_config("toy"))                                  # `rqakit audit --profile toy`

With `teacher="retrain"` (the default) the warm retriever and re-ranker are trained again on the
visible labels, in `<workdir>/<profile>-audit/s<seed>/`, so neither has seen a hidden positive
labelled (a hidden positive may even be drawn as a warm-up negative, as a real false negative
is). `teacher="profile"` reuses the profile's warm models, which were trained with every label:
faster, but the hidden positives leak into the teacher and the recall is an upper bound.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import is_complete, run_stage
from .atomic import write_json
from .config import RunConfig, config_hash
from .data.collection import Split
from .errors import RqaError
from .mining import Calibrator, DenoiseRule, denoise, denoising_quality, labelled_pairs
from .stages.workspace import Workspace

DEFAULT_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
TEACHERS = ("retrain", "profile")


def _pick(qid: str, seed: int, n: int) -> int:
    """A position in 0..n-1 fixed by (seed, query id): the choice does not depend on query order."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") % n


def hide_one_positive(split: Split, seed: int = 0) -> tuple[Split, dict[str, str]]:
    """Hide one labelled positive of every query with two or more (chosen by `seed`).

    Returns (visible, hidden): `visible` is `split` with the hidden positive removed from its qrels
    (every query kept, single-positive ones unchanged); `hidden` maps qid -> the hidden doc id.
    """
    qrels, hidden = {}, {}
    for qid, judged in split.qrels.items():
        positives = sorted(split.positives(qid))
        if len(positives) >= 2:
            hidden[qid] = positives[_pick(qid, seed, len(positives))]
            judged = {d: g for d, g in judged.items() if d != hidden[qid]}
        qrels[qid] = dict(judged)
    return dataclasses.replace(split, qrels=qrels), hidden


def _check_calibration(calibration: str) -> None:
    if calibration == "rank":
        raise RqaError("the audit curve reads calibrated probabilities; calibration 'rank' has none: "
                       "use platt or sigmoid (--set augment.calibration=platt)")


def audit_curve(visible: Split, hidden: dict[str, str], candidates: dict[str, list[str]],
                ce_scores: dict[str, dict[str, float]], *, thresholds=DEFAULT_THRESHOLDS,
                calibration: str = "platt", prior: float | None = 0.2, pos_threshold: float = 0.9,
                max_pseudo_positives: int = 1, score_depth: int = 50) -> pd.DataFrame:
    """Precision and recall of the denoising against the hidden positives, per negative threshold.

    visible, hidden: from `hide_one_positive`; candidates: qid -> retrieved doc ids (rank order);
    ce_scores: qid -> {doc id: CE logit} on at least candidates[qid][:score_depth]. The calibrator
    is fitted on the visible labels of every scored query, as `augment` fits it. Counts are over
    the audited queries (those with a hidden positive and candidates).

    Returns one row per threshold t < pos_threshold: neg_threshold, logit_at_threshold,
    hidden_in_window, dropped, dropped_hidden, precision, recall, kept_out, kept_out_hidden,
    kept_out_precision, kept_out_recall (precision NaN when nothing is dropped).
    """
    _check_calibration(calibration)
    audited = sorted(q for q in hidden if q in candidates)
    if not audited:
        raise RqaError("no audited query has candidates: retrieve for the queries with a hidden positive")
    calibrator = Calibrator(calibration, prior=prior).fit(*labelled_pairs(visible, ce_scores))
    truth = {q: {hidden[q]} for q in audited}
    window = {q: candidates[q][:score_depth] for q in audited}
    rows = []
    for t in sorted(float(t) for t in thresholds):
        if not 0.0 < t < pos_threshold:
            raise RqaError(f"audit threshold {t} must lie between 0 and the positive threshold {pos_threshold}")
        rule = DenoiseRule(neg_threshold=t, pos_threshold=pos_threshold, max_pseudo_positives=max_pseudo_positives,
                           score_depth=score_depth)
        decisions = denoise(visible, {q: candidates[q] for q in audited}, ce_scores, calibrator=calibrator, rule=rule)
        quality = denoising_quality({q: d["dropped"] for q, d in decisions.items()},
                                    {q: d["pseudo"] for q, d in decisions.items()}, truth, window)
        dropped, kept_out = quality["dropped"], quality["kept_out"]
        rows.append({"neg_threshold": t, "logit_at_threshold": calibrator.logit_at(t),
                     "hidden_in_window": quality["unlabeled_positives_in_window"],
                     "dropped": dropped["flagged"], "dropped_hidden": dropped["true"],
                     "precision": dropped["precision"], "recall": dropped["recall"],
                     "kept_out": kept_out["flagged"], "kept_out_hidden": kept_out["true"],
                     "kept_out_precision": kept_out["precision"], "kept_out_recall": kept_out["recall"]})
    return pd.DataFrame(rows)


class AuditWorkspace(Workspace):
    """The profile's workspace with one positive per multi-positive training query hidden, its
    stages cached under `<workdir>/<profile>-audit/s<seed>/`, apart from the profile's own (the
    baselines, which read no training label, are the profile's own)."""

    def __init__(self, cfg: RunConfig, seed: int, main_root: Path):
        super().__init__(cfg, root=audit_root(main_root) / f"s{seed}")
        self.seed, self.main_root = seed, Path(main_root)

    @cached_property
    def _hiding(self):
        train, val, test = Workspace._splits.func(self)
        visible, hidden = hide_one_positive(train, self.seed)
        return (visible, val, test), hidden

    @property
    def _splits(self):
        return self._hiding[0]

    @property
    def hidden(self) -> dict[str, str]:
        """qid -> the positive hidden from the training labels."""
        return self._hiding[1]

    def folder(self, stage: str, cfg_hash: str | None = None) -> Path:
        if stage == "baselines":
            return Workspace(self.config, root=self.main_root).folder(stage, cfg_hash)
        return super().folder(stage, cfg_hash)


def audit_root(main_root: Path) -> Path:
    """`<workdir>/<profile>-audit`: beside the profile's stage folders, never among them."""
    main_root = Path(main_root)
    return main_root.with_name(main_root.name + "-audit")


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def run_audit(cfg: RunConfig, *, seed: int = 0, teacher: str = "retrain", thresholds=DEFAULT_THRESHOLDS,
              force: bool = False, log=print) -> dict:
    """`rqakit audit`: the curve for a profile, cached in `<workdir>/<profile>-audit/curve/<hash>/`
    (`curve.csv`, `summary.json`). Returns the summary with the folder and the curve's rows."""
    from .stages import augment, warmup_ce, warmup_de

    if teacher not in TEACHERS:
        raise RqaError(f"unknown audit teacher {teacher!r}; choose one of: {', '.join(TEACHERS)}")
    a = cfg.augment
    _check_calibration(a.calibration)
    thresholds = sorted({float(t) for t in thresholds} | {float(a.neg_threshold)})
    ws = Workspace(cfg)
    visible, hidden = hide_one_positive(ws.train, seed)
    if not hidden:
        raise RqaError(f"profile {cfg.profile!r} has no training query with two or more labelled positives; "
                       "the audit hides one positive of such queries")
    miner = AuditWorkspace(cfg, seed, ws.root) if teacher == "retrain" else ws
    wde, wce = warmup_de.run(miner, log=log), warmup_ce.run(miner, log=log)
    cfg_hash = config_hash({"augment": ws.hash("augment"), "warmup_ce": miner.hash("warmup_ce"), "seed": seed,
                            "teacher": teacher, "thresholds": thresholds})

    stored = ws.folder("augment")   # with the profile's teacher, augment scored these very pairs
    reuse = teacher == "profile" and is_complete(stored, ws.hash("augment"))

    def build(tmp: Path) -> dict:
        if reuse:
            candidates, ce_scores = augment.retrieve_candidates(miner, wde), augment.stored_scores(stored)
        else:
            candidates, ce_scores, _ = augment.score_candidates(miner, wde, wce)
        curve = audit_curve(visible, hidden, candidates, ce_scores, thresholds=thresholds,
                            calibration=a.calibration, prior=a.calibration_prior, pos_threshold=a.pos_threshold,
                            max_pseudo_positives=a.max_pseudo_positives, score_depth=a.score_depth)
        curve.to_csv(tmp / "curve.csv", index=False)
        at = curve[np.isclose(curve["neg_threshold"], a.neg_threshold)].iloc[0]
        summary = {"profile": cfg.profile, "teacher": teacher, "seed": seed, "queries_audited": len(hidden),
                   "hidden_in_window": int(at["hidden_in_window"]), "score_depth": a.score_depth,
                   "at_neg_threshold": _records(at.to_frame().T)[0],
                   "leak": None if teacher == "retrain" else
                   "the warm models were trained with the hidden positives labelled: recall is an upper bound"}
        write_json(tmp / "summary.json", summary)
        log(f"[audit] {len(hidden)} queries, {summary['hidden_in_window']} hidden positives in the scored window; "
            f"at t = {a.neg_threshold}: precision {at['precision']:.3f}, recall {at['recall']:.3f}")
        return {"summary": summary}

    folder = run_stage(audit_root(ws.root) / "curve" / cfg_hash, cfg_hash, build, config=ws.config_dict(),
                       force=force, log=log)
    summary = json.loads((folder / "summary.json").read_text())
    return {"folder": str(folder), **summary, "curve": _records(pd.read_csv(folder / "curve.csv"))}

"""Figures of the report, drawn on `matplotlib.figure.Figure` (Agg canvas, no pyplot state).

Every function returns the figure; `save(fig, path)` writes a PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

FATES = (("negative", "kept negatives", "tab:blue"), ("dropped", "dropped (likely false negatives)", "tab:orange"),
         ("pseudo-positive", "pseudo-positives", "tab:green"), ("positive", "labelled positives", "tab:red"))


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def list_size_figure(summary: pd.DataFrame, measure: str = "nDCG@10", title: str = "") -> Figure:
    """Figure 4 analogue: instances per query m vs the test `measure` of the dynamic retriever and
    re-ranker (mean over seeds, sd as error bars). `summary`: columns m, model, mean, sd, n."""
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for model, style in (("retriever", "o-"), ("reranker", "s--")):
        part = summary[summary["model"] == model].sort_values("m")
        if part.empty:
            continue
        ax.errorbar(part["m"], part["mean"], yerr=part["sd"].fillna(0.0), fmt=style, capsize=3, label=model)
    ms = sorted(summary["m"].unique())
    if ms:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_xlabel("instances per query m (1 positive + m-1 negatives)")
    ax.set_ylabel(f"test {measure}")
    ax.set_title(title or "List size (Figure 4 analogue)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def curves_figure(dynamic: list[dict], static: list[dict] | None = None, measure: str = "nDCG@10") -> Figure:
    """Mutual improvement: both models of dynamic distillation on the validation slice by step.

    Left: the retriever, dynamic (teacher trains) vs static (frozen teacher). Right: the re-ranker
    of dynamic distillation; the static teacher stays at its step-0 value (dashed).
    """
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    dyn = pd.DataFrame(dynamic)
    if not dyn.empty:
        left.plot(dyn["step"], dyn[f"retriever_{measure}"], "o-", label="retriever, dynamic")
    if static:
        st = pd.DataFrame(static)
        left.plot(st["step"], st[f"retriever_{measure}"], "s--", label="retriever, static")
    key = f"reranker_{measure}"
    if not dyn.empty and key in dyn:
        right.plot(dyn["step"], dyn[key], "o-", color="tab:red", label="re-ranker, dynamic")
        right.axhline(dyn[key].iloc[0], ls="--", color="grey", label="frozen teacher (static)")
    for ax, who in ((left, "retriever"), (right, "re-ranker")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"validation {measure}")
        ax.set_title(who)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle("Joint training: both models on the validation slice")
    return fig


def denoising_figure(candidates: pd.DataFrame, neg_threshold: float | None = None,
                     pos_threshold: float | None = None) -> Figure:
    """Warm CE scores of the scored candidates by fate: logits (left) and calibrated probabilities
    (right, with the denoising thresholds), each group normalised to unit area."""
    has_prob = "prob" in candidates and np.isfinite(candidates["prob"]).any()
    fig = Figure(figsize=(9 if has_prob else 5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2 if has_prob else 1)
    axes = np.atleast_1d(axes)
    for ax, column in zip(axes, ("ce_score", "prob")):
        values = candidates[column].astype(float)
        finite = values[np.isfinite(values)]
        bins = np.linspace(finite.min(), finite.max(), 31) if len(finite) and finite.min() < finite.max() else 30
        for fate, label, color in FATES:
            part = values[(candidates["fate"] == fate) & np.isfinite(values)]
            if len(part):
                ax.hist(part, bins=bins, density=True, histtype="step", lw=1.6, color=color, label=f"{label} ({len(part)})")
        ax.set_xlabel("cross-encoder logit" if column == "ce_score" else "calibrated probability")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
    if has_prob:
        for t in (neg_threshold, pos_threshold):
            if t is not None:
                axes[1].axvline(t, ls=":", color="black")
    axes[0].legend(fontsize=8)
    fig.suptitle("Denoising: warm re-ranker scores of the retrieved candidates")
    return fig


def training_figure(histories: dict[str, list[dict]], keys=("loss",), window: int = 10) -> Figure:
    """Per-step training figures (history.json rows) of one or more stages, one panel per stage:
    each value raw (faint) and as a moving mean over `window` steps."""
    fig = Figure(figsize=(4.5 * max(1, len(histories)), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(histories))))
    for ax, (name, rows) in zip(axes, histories.items()):
        frame = pd.DataFrame(rows)
        for key in keys:
            if key in frame:
                raw, = ax.plot(frame["step"], frame[key], alpha=0.3, lw=0.8)
                smooth = frame[key].rolling(window, min_periods=1).mean()
                ax.plot(frame["step"], smooth, color=raw.get_color(), label=f"{key} (mean of {window} steps)")
        ax.set_title(name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (per query)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig

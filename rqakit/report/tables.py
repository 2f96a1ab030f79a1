"""Tables of the report from the tidy rows: mean ± sd over seeds, CSV and Markdown.

    frame = pd.DataFrame(rows)
    table2(frame, ["nDCG@10", "RR@10", "R@100"])   # one row per system, "0.512 ± 0.010" cells
    write_table(table, "reports/toy/tables", "table2_retrieval")
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .systems import ABLATION_LABELS, RERANK_ORDER, RETRIEVAL_LABELS, RETRIEVAL_ORDER

DIGITS = 3


def summarize(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """(system, metric) -> mean, sd (ddof 1; NaN for one seed), n over the rows of `table`."""
    rows = frame[frame["table"] == table]
    if rows.empty:
        return pd.DataFrame(columns=["system", "metric", "mean", "sd", "n"])
    grouped = rows.groupby(["system", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan, n="count").reset_index()


def mean_sd(mean: float, sd: float, n: int, digits: int = DIGITS) -> str:
    """"0.512 ± 0.010" over several seeds, "0.512" for one value, "" when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if n > 1 and not math.isnan(sd):
        return f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}"


def _cells(summary: pd.DataFrame, system: str, measures) -> dict:
    """{measure: formatted cell} and the seed count of one system."""
    own = summary[summary["system"] == system].set_index("metric")
    cells = {m: mean_sd(own.at[m, "mean"], own.at[m, "sd"], int(own.at[m, "n"])) if m in own.index else ""
             for m in measures}
    cells["seeds"] = int(own["n"].max()) if len(own) else 0
    return cells


def _mean(summary: pd.DataFrame, system: str, metric: str) -> float:
    hit = summary[(summary["system"] == system) & (summary["metric"] == metric)]
    return float(hit["mean"].iloc[0]) if len(hit) else math.nan


def table2(frame: pd.DataFrame, measures) -> pd.DataFrame:
    """Table 2 analogue: first-stage retrieval on the test queries."""
    summary = summarize(frame, "retrieval")
    present = [s for s in RETRIEVAL_ORDER if s in set(summary["system"])]
    return pd.DataFrame([{"system": s, "description": RETRIEVAL_LABELS[s], **_cells(summary, s, measures)}
                         for s in present])


def table3(frame: pd.DataFrame, measures, rerank_depth: int) -> pd.DataFrame:
    """Table 3 analogue: re-ranking the top-N of a retriever, with the candidates' own first measure and
    the re-ranked lists' recall named at the depth they hold (R@N)."""
    from .results import rerank_metrics

    summary, first = summarize(frame, "rerank"), summarize(frame, "retrieval")
    shown = list(rerank_metrics({m: 0.0 for m in measures}, rerank_depth))
    out = []
    for system, reranker, candidates in RERANK_ORDER:
        if system not in set(summary["system"]):
            continue
        cand = _mean(first, candidates, measures[0])
        out.append({"system": system, "re-ranker": reranker, "candidates": f"{candidates} top-{rerank_depth}",
                    f"candidates {measures[0]}": "" if math.isnan(cand) else f"{cand:.{DIGITS}f}",
                    **_cells(summary, system, shown)})
    return pd.DataFrame(out)


def table4(frame: pd.DataFrame, measures, list_size: int) -> pd.DataFrame:
    """Table 4 analogue: the retriever under each ablation at m = list_size, mean ± sd over seeds."""
    summary = summarize(frame, "ablation")
    present = [v for v in ABLATION_LABELS if v in set(summary["system"])]
    return pd.DataFrame([{"variant": v, "description": ABLATION_LABELS[v], "m": list_size, **_cells(summary, v, measures)}
                         for v in present])


def list_size_summary(frame: pd.DataFrame, measure: str = "nDCG@10") -> pd.DataFrame:
    """Figure 4 analogue as numbers: m, model, mean, sd, n (dynamic runs)."""
    summary = summarize(frame, "listsize")
    summary = summary[summary["metric"] == measure].copy()
    parts = summary["system"].str.extract(r"^(retriever|reranker)-m(\d+)$")
    summary["model"], summary["m"] = parts[0], parts[1].astype(int)
    summary["order"] = summary["model"].map({"retriever": 0, "reranker": 1})
    return summary.sort_values(["order", "m"])[["m", "model", "mean", "sd", "n"]].reset_index(drop=True)


def list_size_table(frame: pd.DataFrame, measure: str = "nDCG@10") -> pd.DataFrame:
    summary = list_size_summary(frame, measure)
    out = []
    for m, group in summary.groupby("m", sort=True):
        cells = {f"{g.model} {measure}": mean_sd(g.mean, g.sd, int(g.n)) for g in group.itertuples()}
        out.append({"m": int(m), **cells, "seeds": int(group["n"].max())})
    return pd.DataFrame(out)


def paired_table(test: dict) -> pd.DataFrame:
    """Dynamic against static as one row: the run-level test over seeds (what decides the claim),
    its interval and the difference it detects at 80 % power, and the query-level tests beside it."""
    p = lambda v: "" if v is None else f"{v:.3g}"                               # noqa: E731
    ci = lambda v: "" if v is None else f"[{v[0]:+.{DIGITS}f}, {v[1]:+.{DIGITS}f}]"  # noqa: E731
    return pd.DataFrame([{
        "measure": test["measure"], "static": f"{test['mean_a']:.{DIGITS}f}", "dynamic": f"{test['mean_b']:.{DIGITS}f}",
        "diff (dynamic - static)": f"{test['diff']:+.{DIGITS}f}", "95 % CI (seeds)": ci(test.get("ci")),
        "p, run-level": p(test.get("p")), "run-level test": test.get("test") or "none (one run each)",
        "detectable at 80 % power": "" if test.get("detectable") is None else f"{test['detectable']:.{DIGITS}f}",
        "p, query-level paired t": p(test.get("query_p")), "p, query-level Wilcoxon": p(test.get("query_p_wilcoxon")),
        "95 % CI (queries, bootstrap)": ci(test.get("query_ci")), "test queries": test.get("n_queries", ""),
        "seeds (dynamic/static)": f"{test['n_b']}/{test['n_a']}",
    }])


def hybrid_table(choices: list[dict], measures) -> pd.DataFrame:
    """The fusion chosen on validation per seed, and its test figures."""
    return pd.DataFrame([{"system": c.get("system", "hybrid"), "seed": c["seed"], "method": c["method"],
                          "BM25 weight": c["bm25_weight"],
                          f"val {c['measure']}": f"{c['val_value']:.{DIGITS}f}",
                          **{f"test {m}": f"{c['test'][m]:.{DIGITS}f}" for m in measures if m in c["test"]}}
                         for c in choices])


def markdown_table(frame: pd.DataFrame, float_format: str = "{:g}") -> str:
    """A GitHub pipe table; floats through `float_format`, None/NaN as ""."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return float_format.format(v)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in values) + " |" for values in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_table(frame: pd.DataFrame, folder: str | Path, name: str, caption: str = "",
                float_format: str = "{:g}") -> Path:
    """`<folder>/<name>.csv` and `<name>.md` (caption above the table); returns the .md path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    text = (f"{caption}\n\n" if caption else "") + markdown_table(frame, float_format) + "\n"
    (folder / f"{name}.md").write_text(text)
    return folder / f"{name}.md"

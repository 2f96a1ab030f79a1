"""The distillation study's report, from the exported run files alone (`rqakit.study`).

    records = read_runs("reports/scifact-study")
    frame = conditions_table(records)        # one row per condition: arms, difference, tests, verdict
    write_study(records, "reports/scifact-study")   # results.json, tables/, figures/, report.md

A condition compares its dynamic and static arms on the runs of one precision (the one with the
most seeds in both arms; runs of another precision are named, never mixed in).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import false_discovery_control

from ..artifacts import machine_cpu
from ..atomic import write_json
from ..evaluation import paired_test
from ..stages.teacher import verdict_line
from ..stats import ALPHA, bootstrap_queries, compare_seeds, detectable_difference, verdict
from ..study import (
    CONDITIONS,
    DRIFT_LISTS,
    MEASURE,
    Condition,
    arm_runs,
    best_setting,
    chosen_point,
    complete,
    condition,
    lead_to_confirm,
    paired_runs,
    runs_by_seed,
)
from .figures import save
from .published import ROWS as PUBLISHED
from .systems import RETRIEVAL_LABELS
from .tables import write_table

COMPARED = tuple(c for c in CONDITIONS if not c.best_of)   # dynamic against static
BEST_OF = tuple(c for c in CONDITIONS if c.best_of)        # one arm: the best retriever

# The paper's Table 4 (MS MARCO dev, 8 instances per query, MRR@10): the claim under test.
PAPER_DYNAMIC, PAPER_STATIC = 37.4, 36.0
PROFILE_CONDITION = "power"   # the profile's own setting in both arms: what a change is set against


def compare_condition(records: list[dict], cond: Condition, measure: str = MEASURE) -> dict:
    """Dynamic minus static on test `measure`: arms' mean ± sd over seeds, the run-level test
    (paired by seed), its 95 % interval and detectable difference, the query-level paired test and
    bootstrap interval (per-query values averaged over each arm's seeds), and the verdict."""
    precision, others, dyn, sta = paired_runs(records, cond)
    dyn_all, sta_all = arm_runs(records, cond, "dynamic"), arm_runs(records, cond, "static")
    own = [r for r in dyn_all + sta_all if r["condition"] == cond.key]
    out = {"condition": cond.key, "title": cond.title, "extension": cond.extension, "precision": precision,
           "other_precisions": others, "seeds_dynamic": sorted(dyn), "seeds_static": sorted(sta),
           "seeds_planned": len(cond.seeds), "in_progress": len(dyn) < len(cond.seeds),
           "chosen": chosen_point(records, cond),
           **(_lead(records, cond) if cond.confirms else {}),
           "wall_time_s": float(sum(r.get("wall_time_s") or 0.0 for r in own))}
    shifts = arm_shifts(records, cond, precision, measure)
    if shifts:
        out["arm_shifts"] = shifts
    if not dyn or not sta:
        return {**out, "complete": False}
    c = compare_seeds({s: r["test"][measure] for s, r in sta.items()}, {s: r["test"][measure] for s, r in dyn.items()})
    queries = sorted(next(iter(dyn.values()))["test_per_query"])
    a = np.array([np.mean([r["test_per_query"][q] for r in sta.values()]) for q in queries])
    b = np.array([np.mean([r["test_per_query"][q] for r in dyn.values()]) for q in queries])
    q = paired_test(a, b)
    return {**out, "complete": True, "static": c["mean_a"], "static_sd": c["sd_a"], "dynamic": c["mean_b"],
            "dynamic_sd": c["sd_b"], "diff": c["diff"], "ci": c["ci"], "p": c["p"], "test": c["test"],
            "detectable": c["detectable"], "query_ci": bootstrap_queries(a, b), "query_p": q["p_ttest"],
            "verdict": verdict(c, "static", "dynamic"),
            "machines": sorted({str(r.get("machine")) for r in [*dyn.values(), *sta.values()]}),
            "val_static": float(np.mean([r["val"][measure] for r in sta.values()])),
            "val_dynamic": float(np.mean([r["val"][measure] for r in dyn.values()]))}


def arm_shifts(records: list[dict], cond: Condition, precision: str | None, measure: str = MEASURE) -> list[dict]:
    """What a condition's change did to each arm it trains: the arm's test `measure` minus the same
    arm of the runs it changes, paired by seed in `precision`, beside what the change did to the gap.
    A condition that changes one arm and reuses the other is set against the condition it reuses;
    one that changes both, against the profile's runs (`PROFILE_CONDITION`). An arm with fewer than
    two seeds in common (fresh seeds, as a confirmation's) has none."""
    reused = {arm.reuse for arm in cond.arms().values() if arm.reuse}
    if cond.key == PROFILE_CONDITION or len(reused) > 1:
        return []
    reference = reused.pop() if reused else PROFILE_CONDITION
    shifts = []
    for name, arm in cond.arms().items():
        if arm.reuse is not None:
            continue
        mine = runs_by_seed(arm_runs(records, cond, name), precision)
        base = runs_by_seed(arm_runs(records, condition(reference), name), precision)
        seeds = sorted(set(mine) & set(base))
        if len(seeds) < 2:
            continue
        c = compare_seeds({s: base[s]["test"][measure] for s in seeds}, {s: mine[s]["test"][measure] for s in seeds})
        shifts.append({"arm": name, "reference": reference, "seeds": seeds, "diff": c["diff"], "ci": c["ci"],
                       "p": c["p"]})
    return shifts


def shift_text(c: dict) -> str:
    """`the static arm against the static arm of two-epochs on the same 5 seeds: +0.004, 95 % CI [...], p = 0.5`,
    for each arm the condition changed."""
    parts = []
    for s in c["arm_shifts"]:
        tested = "" if s["p"] is None else f", 95 % CI {_interval(s['ci'])}, p = {s['p']:.3g}"
        parts.append(f"the {s['arm']} arm against the {s['arm']} arm of {s['reference']} on the same {len(s['seeds'])} "
                     f"seeds: {s['diff']:+.3f}{tested}")
    return "; ".join(parts)


def _lead(records: list[dict], cond: Condition) -> dict:
    """What a confirmation tests again: the lead's condition, difference and p (None before it is
    known or where there is none), the difference its seeds detect at 80 % power if they spread as
    the lead's did (stated before they run), and whether its conditions have all run."""
    lead, n = lead_to_confirm(records, cond) or {}, len(cond.seeds)
    return {"confirms": lead.get("condition"), "lead_diff": lead.get("diff"), "lead_p": lead.get("p"),
            "planned_detectable": detectable_difference(lead["sd"] / math.sqrt(n), n - 1) if lead else None,
            "decided": complete(records, cond.confirms)}


def compare_all(records: list[dict]) -> list[dict]:
    """`compare_condition` for every condition that compares two arms (`COMPARED`), each with a
    run-level test given `p_adjusted`: Benjamini-Hochberg over the `family` conditions tested, since
    a claim read off the best of several conditions needs more than p < 0.05 in one. A confirmation
    on fresh seeds is one pre-stated test, outside the family."""
    comparisons = [compare_condition(records, c) for c in COMPARED]
    tested = [c for c in comparisons if c["complete"] and c["p"] is not None and "confirms" not in c]
    if tested:
        for c, q in zip(tested, false_discovery_control([c["p"] for c in tested])):
            c["p_adjusted"], c["family"] = float(q), len(tested)
    return comparisons


def _mean_sd(mean, sd) -> str:
    return f"{mean:.3f}" if sd is None or (isinstance(sd, float) and math.isnan(sd)) else f"{mean:.3f} ± {sd:.3f}"


def _interval(ci) -> str:
    return "" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def conditions_table(comparisons: list[dict]) -> pd.DataFrame:
    rows = []
    for c in comparisons:
        if not c["complete"]:
            rows.append({"condition": c["condition"], "seeds (dyn/static)": "0", "verdict": "not run yet"})
            continue
        rows.append({
            "condition": _condition_label(c),
            "precision": c["precision"],
            "seeds (dyn/static)": _seeds_label(c),
            "static": _mean_sd(c["static"], c["static_sd"]), "dynamic": _mean_sd(c["dynamic"], c["dynamic_sd"]),
            "dynamic - static": f"{c['diff']:+.3f}", "95 % CI (seeds)": _interval(c["ci"]),
            "95 % CI (queries, bootstrap)": _interval(c["query_ci"]),
            "p (run-level)": "" if c["p"] is None else f"{c['p']:.3g}",
            "p adjusted (BH)": f"{c['p_adjusted']:.3g}" if "p_adjusted" in c else "",
            "p (query-level)": f"{c['query_p']:.3g}",
            "detectable at 80 %": "" if c["detectable"] is None else f"{c['detectable']:.3f}",
            "verdict": verdict_text(c)})
    return pd.DataFrame(rows)


def shift_table(comparisons: list[dict]) -> pd.DataFrame:
    """Each arm a condition trains against the same arm of the runs it changes (`arm_shifts`), test
    `MEASURE` paired by seed: what the change did to each arm, beside what it did to the gap."""
    rows = [{"condition": c["condition"], "arm": s["arm"], "against": f"the {s['arm']} arm of {s['reference']}",
             "seeds": len(s["seeds"]), "change": f"{s['diff']:+.3f}",
             "95 % CI (seeds)": "" if s["ci"] is None else _interval(s["ci"]),
             "p": "" if s["p"] is None else f"{s['p']:.3g}"}
            for c in comparisons for s in c.get("arm_shifts", [])]
    return pd.DataFrame(rows)


def verdict_text(c: dict) -> str:
    """The run-level verdict, qualified where Benjamini-Hochberg over the conditions undoes it."""
    if c["verdict"].endswith(" better") and c.get("p_adjusted", 0.0) >= ALPHA:
        return f"{c['verdict']} alone; not after adjustment"
    return c["verdict"]


def _condition_label(c: dict) -> str:
    """`two-epochs`, `confirm (two-epochs)`, `soft-targets (extension)`."""
    return (c["condition"] + (f" ({c['confirms']})" if c.get("confirms") else "")
            + (" (extension)" if c["extension"] else ""))


def _seeds_label(c: dict) -> str:
    """`5/5`, or `4/4 of 5` while a condition's seeds are still running."""
    return (f"{len(c['seeds_dynamic'])}/{len(c['seeds_static'])}"
            + (f" of {c['seeds_planned']}" if c["in_progress"] else ""))


def differences_figure(comparisons: list[dict], paper_gap: float | None = None) -> Figure:
    """Dynamic - static per condition with its 95 % interval over seeds (thick) and over queries
    (thin), zero and the paper's relative gain."""
    done = [c for c in comparisons if c["complete"]]
    fig = Figure(figsize=(7.5, 0.6 * max(len(done), 2) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    for i, c in enumerate(reversed(done)):
        if c["ci"] is not None:
            ax.plot(c["ci"], [i, i], "-", lw=4, color="tab:blue", alpha=0.6, solid_capstyle="butt")
        ax.plot(c["query_ci"], [i, i], "-", lw=1, color="black")
        ax.plot([c["diff"]], [i], "o", color="tab:blue")
    ax.axvline(0.0, color="grey", lw=1)
    if paper_gap is not None:
        ax.axvline(paper_gap, color="tab:red", ls="--", lw=1, label=f"paper's relative gain here (+{paper_gap:.3f})")
        fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    ax.set_yticks(range(len(done)), [f"{_condition_label(c)} ({_seeds_label(c)})" for c in reversed(done)])
    ax.set_xlabel(f"test {MEASURE}: dynamic - static (thick: 95 % CI over seeds; thin: over queries)")
    ax.set_title("Dynamic minus static distillation, by condition")
    ax.grid(axis="x", alpha=0.3)
    return fig


def curve_band(runs: list[dict], key: str) -> pd.DataFrame:
    """Columns step, mean, sd, n of a validation curve over the runs that drew it."""
    rows = [(p["step"], p[key]) for r in runs for p in (r.get("curves") or []) if key in p]
    if not rows:
        return pd.DataFrame(columns=["step", "mean", "sd", "n"])
    frame = pd.DataFrame(rows, columns=["step", "value"]).groupby("step")["value"]
    return pd.DataFrame({"mean": frame.mean(), "sd": frame.std(ddof=1), "n": frame.size()}).reset_index()


def gap_by_step(dyn: list[dict], sta: list[dict], key: str = f"retriever_{MEASURE}") -> pd.DataFrame:
    """Columns step, diff, lo, hi, n: dynamic - static on a validation curve at each step, over the
    seeds both arms drew it, with the run-level 95 % interval (`compare_seeds`; none for one seed)."""
    def by_seed(runs):
        return {(r["seed"], p["step"]): p[key] for r in runs for p in (r.get("curves") or []) if key in p}

    d, s = by_seed(dyn), by_seed(sta)
    rows = []
    for step in sorted({k[1] for k in set(d) & set(s)}):
        seeds = sorted(k[0] for k in set(d) & set(s) if k[1] == step)
        c = compare_seeds({i: s[i, step] for i in seeds}, {i: d[i, step] for i in seeds})
        lo, hi = c["ci"] if c["ci"] is not None else (np.nan, np.nan)
        rows.append({"step": step, "diff": c["diff"], "lo": lo, "hi": hi, "n": len(seeds)})
    return pd.DataFrame(rows, columns=["step", "diff", "lo", "hi", "n"])


def curves_figure(records: list[dict], cond: Condition) -> Figure | None:
    """Validation curves of the condition's arms by step: the retriever of both arms, mean over
    seeds with a ±1 sd band (left); their paired difference with its 95 % interval over seeds
    (middle: does the gap move with training?); the dynamic arm's re-ranker against the teacher's
    step-0 value (right)."""
    dyn, sta = arm_runs(records, cond, "dynamic"), arm_runs(records, cond, "static")
    bands = {"retriever, dynamic": curve_band(dyn, f"retriever_{MEASURE}"),
             "retriever, static": curve_band(sta, f"retriever_{MEASURE}"),
             "re-ranker, dynamic": curve_band(dyn, f"reranker_{MEASURE}")}
    if all(b.empty for b in bands.values()):
        return None
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    for (label, band), ax, style in zip(bands.items(), (left, left, right), ("o-", "s--", "o-")):
        if band.empty:
            continue
        line, = ax.plot(band["step"], band["mean"], style, label=f"{label} (n = {int(band['n'].max())})")
        ax.fill_between(band["step"], band["mean"] - band["sd"].fillna(0), band["mean"] + band["sd"].fillna(0),
                        color=line.get_color(), alpha=0.2)
    gap = gap_by_step(dyn, sta)
    if not gap.empty:
        line, = middle.plot(gap["step"], gap["diff"], "o-", color="tab:purple",
                            label=f"dynamic - static (n = {int(gap['n'].max())} paired seeds)")
        middle.fill_between(gap["step"], gap["lo"], gap["hi"], color=line.get_color(), alpha=0.2,
                            label="95 % CI over seeds")
    middle.axhline(0.0, color="grey", lw=1)
    teacher = bands["re-ranker, dynamic"]
    if not teacher.empty:
        right.axhline(float(teacher.iloc[0]["mean"]), color="grey", ls=":", label="warm re-ranker (step 0)")
    for ax, title, ylabel in ((left, "retriever", f"{MEASURE} on the validation pool (mean ± sd)"),
                              (middle, "retriever gap", f"{MEASURE} on the pool: dynamic - static"),
                              (right, "re-ranker", f"{MEASURE} on the validation pool (mean ± sd)")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {cond.key}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:      # a panel with nothing drawn yet has no legend
            ax.legend(fontsize=8)
    return fig


def _means_per_run(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    """One row per group of `keys`: the mean of every other column over its runs, and their count."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby(keys, sort=False)
    out = frame.mean().reset_index()
    out.insert(len(keys), "runs", frame.size().values)
    return out


def clip_table(records: list[dict], clip: float = 1.0) -> pd.DataFrame:
    """Per condition and arm: the share of steps whose retriever gradient the clip scaled down, the
    median factor it scaled it by (clip / norm where the norm exceeds the clip: the global norm over
    both towers, or the retriever's own under `joint.clip_per_tower`), and each tower's median norm
    before the clip."""
    rows = []
    for r in records:
        h = r.get("history") or []
        if not h or "grad_norm_de" not in h[0]:
            continue
        own = bool(r["overrides"].get("joint.clip_per_tower"))
        norms = np.array([x["grad_norm_de"] if own else x["grad_norm"] for x in h])
        row = {"condition": r["condition"], "arm": r["arm"], "clipped": np.mean(norms > clip),
               "retriever's gradient scaled by (median)": np.median(np.minimum(1.0, clip / norms)),
               "retriever norm (median)": np.median([x["grad_norm_de"] for x in h]),
               "re-ranker norm (median)": (np.median([x["grad_norm_ce"] for x in h]) if "grad_norm_ce" in h[0]
                                           else np.nan)}
        rows.append(row)
    return _means_per_run(rows, ["condition", "arm"])


KL_LOSS = "retriever's KL loss, last 10 steps"


def drift_table(records: list[dict]) -> pd.DataFrame:
    """Per condition, over its dynamic runs (`study.teacher_drift`, means over runs): how far the
    joint re-ranker ended from the warm one on its training lists and how sharp its targets became,
    beside the KL loss the retriever was still being trained on (its last 10 steps)."""
    rows = [{"condition": r["condition"], "steps": r.get("steps"),
             "KL(warm || joint), median per list": r["drift"]["kl_warm_joint"]["q50"],
             "KL(warm || joint), mean per list": r["drift"]["kl_warm_joint"]["mean"],
             "same top passage": r["drift"]["top1_agreement"],
             "p(positive) warm, median": r["drift"]["p_positive_warm"]["q50"],
             "p(positive) joint, median": r["drift"]["p_positive_joint"]["q50"],
             "target entropy joint, median (nats)": r["drift"]["entropy_joint"]["q50"],
             KL_LOSS: np.mean([h["kl"] for h in (r.get("history") or [])[-10:] if "kl" in h] or [np.nan])}
            for r in records if r["arm"] == "dynamic" and r.get("drift")]
    out = _means_per_run(rows, ["condition"])
    if not out.empty:
        out["steps"] = out["steps"].round().astype("Int64")
    return out


def reranker_table(records: list[dict]) -> pd.DataFrame:
    """Per condition that trains its own dynamic arm, the joint re-ranker on the validation pool
    (its curves, mean over the runs that drew them): at step 0 (the warm teacher), at its lowest and
    at the last step; whether it falls below its teacher before it learns."""
    rows = []
    for cond in COMPARED:
        if cond.dynamic.reuse is not None:
            continue
        key, runs = f"reranker_{MEASURE}", arm_runs(records, cond, "dynamic")
        band = curve_band(runs, key)
        if band.empty:
            continue
        low = band.loc[band["mean"].idxmin()]
        curves = [[p[key] for p in r["curves"] if key in p] for r in runs if r.get("curves")]
        rows.append({"condition": cond.key, "runs": int(band["n"].max()), "step 0 (warm)": band["mean"].iloc[0],
                     "lowest": low["mean"], "lowest at step": int(low["step"]), "last step": band["mean"].iloc[-1],
                     "last - step 0": band["mean"].iloc[-1] - band["mean"].iloc[0],
                     "runs that fall below step 0": sum(min(c[1:], default=c[0]) < c[0] for c in curves if c),
                     "largest fall": max((c[0] - min(c[1:], default=c[0]) for c in curves if c), default=0.0)})
    return pd.DataFrame(rows)


def teacher_table(out: Path) -> pd.DataFrame:
    """The static targets each warm re-ranker gives its training lists, per temperature."""
    import json

    rows = []
    for path in sorted((Path(out) / "teachers").glob("*.json")):
        t = json.loads(path.read_text())
        for key in [k for k in t if k.startswith("T=")]:
            rows.append({"teacher": t["teacher"], "temperature": key[2:], "lists": t["lists_fully_scored"],
                         "entropy (median, nats)": t[key]["entropy"]["q50"],
                         "uniform entropy (ln m)": math.log(t["m"]),
                         "p(positive) median": t[key]["p_positive"]["q50"],
                         "p(positive) 5 %": t[key]["p_positive"]["q05"],
                         "share p(positive) > 0.9": t[key]["share_p_positive_above_0.9"],
                         "positive logit (median)": t["positive_logit"]["q50"]})
    return pd.DataFrame(rows)


def teacher_checks(out: Path) -> list[dict]:
    """The exported teachers that carry their validation check (`stages.teacher`)."""
    found = [json.loads(p.read_text()) for p in sorted((Path(out) / "teachers").glob("*.json"))]
    return [t for t in found if "leads" in t]


def _machine_limits(records: list[dict], comparisons: list[dict]) -> tuple[str, ...]:
    """A limit for conditions that pair runs of one precision from several CPUs, with what the same
    run computed again on another CPU moved by, where a retrained teacher measured it."""
    mixed = [c for c in comparisons if len(c.get("machines", ())) > 1]
    if not mixed:
        return ()
    cpus = sorted({machine_cpu(m) for c in mixed for m in c["machines"]})
    text = (f"{', '.join(c['condition'] for c in mixed)} pair{'s' if len(mixed) == 1 else ''} runs of one precision "
            f"from {len(cpus)} CPUs ({'; '.join(cpus)}), by seed whichever each ran on: the same run on another CPU "
            "rounds differently and drifts apart in training, which adds noise to a pair but no direction.")
    moved = [row["teacher - exported"] for cond in COMPARED for _, row in teacher_source_table(records, cond).iterrows()
             if row["teacher"] != "the exported run"]
    if moved:
        text += (f" Measured: {len(moved)} run{'s' if len(moved) > 1 else ''} retrained on another CPU "
                 f"(trained teachers) moved test {MEASURE} by " + ", ".join(f"{v:+.3f}" for v in moved) + ".")
    return (text,)


def _teacher_limits(out: Path, records: list[dict], reranker: pd.DataFrame) -> tuple[str, ...]:
    """A limit for the teachers that do not lead the retriever they teach on validation: no warm
    teacher that does is tested; a condition whose static arm distils from a trained re-ranker
    (`joint.teacher: joint`) tests a stronger one, named with its gain on the validation pool."""
    weak = [t["teacher"] for t in teacher_checks(out) if not t["leads"]["leads"]]
    if not weak:
        return ()
    text = (f"The warm re-ranker does not lead the warm retriever on every validation candidate set "
            f"({', '.join(weak)}; the teacher checks below), where the paper's re-ranker leads its retriever by "
            "3.1 MRR@10 (41.9 against 38.8 on MS MARCO dev, Tables 3 and 2). A warm teacher that leads is not tested "
            "here (`--set warmup_ce.lead_epochs=N` trains one).")
    rows = reranker.set_index("condition") if not reranker.empty else reranker
    for cond in COMPARED:
        source = cond.dynamic.reuse
        if (cond.trained_teacher and source in rows.index
                and arm_runs(records, cond, "static")):
            row = rows.loc[source]
            text += (f" {cond.key} distils its static arm from a stronger one, the re-ranker the dynamic runs of "
                     f"{source} end with ({row['last step']:.3f} {MEASURE} on the validation pool against "
                     f"{row['step 0 (warm)']:.3f} for the warm one).")
    return (text,)


def arm_text(arm) -> str:
    """What an arm trains with, in words: the runs it reuses, its overrides, or the profile."""
    if arm.reuse:
        return f"runs of {arm.reuse}"
    return ", ".join(f"{k} = {v}" for k, v in arm.overrides.items()) or "the profile"


def seed_table(records: list[dict], cond: Condition) -> pd.DataFrame:
    """Per seed: each arm's test and validation score and precision (one row per seed)."""
    rows: dict = {}
    cpus: dict = {}
    for arm in ("static", "dynamic"):
        for r in arm_runs(records, cond, arm):
            row = rows.setdefault((r["seed"], str(r["precision"])), {"seed": r["seed"], "precision": r["precision"]})
            row[f"{arm} test"] = r["test"][MEASURE]
            row[f"{arm} val"] = r["val"][MEASURE]
            cpus.setdefault((r["seed"], str(r["precision"])), {})[arm] = machine_cpu(r.get("machine"))
    if len({cpu for arms in cpus.values() for cpu in arms.values()}) > 1:   # named only where runs span machines
        for key, arms in cpus.items():
            rows[key]["CPU"] = (next(iter(arms.values())) if len(set(arms.values())) == 1
                                else "; ".join(f"{arm}: {cpu}" for arm, cpu in arms.items()))
    frame = pd.DataFrame(list(rows.values()))
    if {"static test", "dynamic test"} <= set(frame.columns):
        frame["dynamic - static"] = frame["dynamic test"] - frame["static test"]
    return frame.sort_values(["precision", "seed"]).reset_index(drop=True) if not frame.empty else frame


def teacher_source_table(records: list[dict], cond: Condition) -> pd.DataFrame:
    """A condition whose static arm distils from a trained teacher: per seed whose record names the
    run it distilled from (`teacher_run`), that run's test score beside the exported dynamic run of
    the same configuration it pairs with. Where the two differ in when and where they trained, the
    teacher was retrained (its workspace lost), and the difference is that of the machine alone."""
    paired = {r["seed"]: r for r in arm_runs(records, cond, "dynamic")}
    rows = []
    for r in sorted(arm_runs(records, cond, "static"), key=lambda r: r["seed"]):
        source, pair = r.get("teacher_run"), paired.get(r["seed"])
        if not source or pair is None or source["folder_hash"] != pair["folder_hash"]:
            continue
        again = source["finished_at"] != pair["finished_at"]
        rows.append({"seed": r["seed"], "teacher": f"retrained on {machine_cpu(source['machine'])}" if again
                     else "the exported run",
                     f"teacher test {MEASURE}": source["test"][MEASURE],
                     f"exported dynamic test {MEASURE}": pair["test"][MEASURE],
                     "teacher - exported": source["test"][MEASURE] - pair["test"][MEASURE],
                     "teacher wall time (h)": (source.get("wall_time_s") or 0.0) / 3600})
    return pd.DataFrame(rows)


def own_teacher_pairs(records: list[dict], cond: Condition) -> dict:
    """Dynamic minus static over the seeds the verdict pairs (`paired_runs`), each static run set
    against the dynamic run its record names as its teacher (`teacher_run`; the exported run of its
    seed where it names none)."""
    _, _, dyn, sta = paired_runs(records, cond)
    teacher = {seed: (r.get("teacher_run") or dyn[seed])["test"][MEASURE] for seed, r in sta.items()}
    return {**compare_seeds({seed: r["test"][MEASURE] for seed, r in sta.items()}, teacher), "seeds": sorted(sta)}


def _teacher_source_lines(records: list[dict], cond: Condition) -> list[str]:
    """The report's lines for `teacher_source_table`, none for a condition with the warm teacher."""
    if not cond.trained_teacher:
        return []
    frame = teacher_source_table(records, cond)
    paired = {r["seed"]: r for r in arm_runs(records, cond, "dynamic")}
    unnamed = [r for r in sorted(arm_runs(records, cond, "static"), key=lambda r: r["seed"]) if not r.get("teacher_run")]
    lines = []
    if not frame.empty:
        lines += ["The teacher each static run distilled from, against the dynamic run it pairs with (the same "
                  "configuration and stage folder): a retrained teacher is the same run computed again in the same "
                  "precision on another machine, so its difference is what the machine alone moves a run by.", "",
                  _md(frame), ""]
        if (frame["teacher"] != "the exported run").any():
            c = own_teacher_pairs(records, cond)
            lines += [f"Paired instead with the run each static run distilled from (the retrained one where there is "
                      f"one): dynamic - static {c['diff']:+.3f}, 95 % CI {_interval(c['ci'])}, p = {c['p']:.3g}, over "
                      f"{len(c['seeds'])} seeds. The verdict above pairs with the exported runs.", ""]
    if unnamed:
        same = all(r["seed"] in paired and r.get("machine") == paired[r["seed"]].get("machine") for r in unnamed)
        many = len(unnamed) > 1
        lines += [f"{'Seeds' if many else 'Seed'} {', '.join(str(r['seed']) for r in unnamed)} "
                  f"{'were' if many else 'was'} exported before run records named the teacher run"
                  + ("; each trained on the machine of the dynamic run it pairs with." if same else "."), ""]
    return lines


def grid_table(records: list[dict], cond: Condition) -> pd.DataFrame:
    """The candidates of a grid condition with their first-seed validation score, and below them the
    profile's own setting on the same seed and arm (power's run), for reference: a grid of changes
    chooses its best candidate, which may still fall short of not changing anything."""
    from ..study import run_id

    seed, chosen = cond.seeds[0], chosen_point(records, cond)
    score = f"val {MEASURE} (seed {seed}, {cond.grid_arm})"

    def val(run: str, precisions=None) -> float | None:
        hit = [r for r in records if r["run"] == run and (precisions is None or str(r["precision"]) in precisions)]
        return hit[0]["val"][MEASURE] if hit else None

    rows = [{"setting": ", ".join(f"{k} = {v}" for k, v in point.items()),
             score: val(run_id(cond.key, cond.grid_arm, seed, point)), "chosen": "yes" if point == chosen else ""}
            for point in cond.grid]
    tried = {str(r["precision"]) for r in records if r["condition"] == cond.key and r["seed"] == seed}
    profile = val(run_id(PROFILE_CONDITION, cond.grid_arm, seed), tried)       # a reference in the grid's precision only
    if profile is not None:
        rows.append({"setting": "the profile's setting (power's run; for reference, not a candidate)",
                     score: profile, "chosen": ""})
    return pd.DataFrame(rows)


def wall_time_table(records: list[dict]) -> pd.DataFrame:
    """Hours by condition and precision: each run's wall time, and the first stages its condition
    rebuilt apart from the profile's (`own_stages`), each stage folder counted once."""
    rows, counted = [], set()
    for r in records:
        rows.append({"condition": r["condition"], "precision": r["precision"], "runs": 1,
                     "wall time (h)": (r.get("wall_time_s") or 0.0) / 3600, "of which first stages (h)": 0.0})
        for stage in r.get("own_stages", ()):
            if (key := (r["condition"], stage["stage"], stage["folder_hash"])) not in counted:
                counted.add(key)
                hours = (stage.get("wall_time_s") or 0.0) / 3600
                rows.append({"condition": r["condition"], "precision": stage["precision"], "runs": 0,
                             "wall time (h)": hours, "of which first stages (h)": hours})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby(["condition", "precision"], sort=False).sum().reset_index()
    return frame.replace({"of which first stages (h)": {0.0: None}})


def best_retriever(records: list[dict], cond: Condition) -> dict:
    """A `best_of` condition: the setting chosen on validation and its runs on test, beside the
    same setting at the profile's passage length and the baselines its runs' workspace read."""
    best = best_setting(records, cond)
    out = {"condition": cond.key, "chosen": best, "complete": False}
    if best is None:
        return out
    runs = [r for r in records if r["condition"] == cond.key]
    source = arm_runs(records, condition(best["condition"]), best["arm"])
    out["source_test"], out["source_test_sd"] = _test_spread(source)
    out.update({"seeds": sorted(r["seed"] for r in runs), "precision": sorted({str(r["precision"]) for r in runs}),
                "source_seeds": len(source)})
    if runs:
        out["test"], out["test_sd"] = _test_spread(runs)
        out.update({"complete": len(runs) == len(cond.seeds), "baselines_test": runs[0].get("baselines_test") or {}})
        out.update(_best_against(runs, source))
    out["outside"] = higher_outside(records, cond, best["val"])
    return out


def _best_against(runs: list[dict], source: list[dict]) -> dict:
    """The chosen setting's runs against the same setting at the profile's passage length (paired
    by seed, in the precision of most of its runs: "length_effect", once every seed has its pair)
    and against each small published model ("published": one-sample t over seeds; it holds the
    runs' noise only, not the differences of setting)."""
    precision = max({str(r["precision"]) for r in runs}, key=[str(r["precision"]) for r in runs].count)
    longer = {s: r["test"][MEASURE] for s, r in runs_by_seed(runs, precision).items()}
    shorter = {s: r["test"][MEASURE] for s, r in runs_by_seed(source, precision).items() if s in longer}
    out = {"published": {system: compare_seeds({None: score}, longer) for system, score, _ in _small_models()}}
    if set(shorter) == set(longer) and len(longer) >= 2:
        out["length_effect"] = {**compare_seeds(shorter, longer), "seeds": sorted(longer), "precision": precision}
    return out


def _small_models() -> list[tuple[str, float, str]]:
    """(system, test score, source) of the small off-the-shelf dense models published for the collection."""
    return [(system, score, src) for system, kind, score, _, src in PUBLISHED
            if kind == "dense, zero-shot" and "small" in system]


def higher_outside(records: list[dict], cond: Condition, val: float) -> list[dict]:
    """The arms trained by conditions that are not candidates of `cond.best_of` (controls, and
    runs that need another run first) whose mean validation score is above `val`: a user weighing
    the chosen setting should see them, with their test scores at the profile's passage length.
    A confirmation's arms repeat a candidate's setting and are left out."""
    rows = []
    for other in CONDITIONS:
        if other.key in cond.best_of or other.best_of or other.confirms:
            continue
        for arm, spec in other.arms().items():
            runs = arm_runs(records, other, arm) if spec.reuse is None else []
            if runs and (mean := float(np.mean([r["val"][MEASURE] for r in runs]))) > val:
                test, sd = _test_spread(runs)
                rows.append({"condition": other.key, "arm": arm, "val": mean, "seeds": len(runs), "test": test,
                             "test_sd": sd})
    return sorted(rows, key=lambda r: -r["val"])


def _test_spread(runs: list[dict]) -> tuple[float, float | None]:
    """Mean and sd (None for one run) of the runs' test scores."""
    scores = np.array([r["test"][MEASURE] for r in runs], float)
    return float(scores.mean()), (float(scores.std(ddof=1)) if len(scores) > 1 else None)


def best_table(best: dict, cond: Condition) -> pd.DataFrame:
    """The chosen setting at both passage lengths, the baselines at the longer one, and the small
    off-the-shelf models a user would weigh it against (published; other settings)."""
    if best["chosen"] is None:
        return pd.DataFrame()
    length = cond.overrides.get("model.p_max_len")
    name = f"{best['chosen']['condition']}, {best['chosen']['arm']}"
    rows = [{"system": f"{name}, profile's passage length", f"test {MEASURE}": best["source_test"],
             "sd": best["source_test_sd"], "seeds": best["source_seeds"], "source": "this study"}]
    if "test" in best:
        rows.append({"system": f"{name}, passages up to {length} tokens", f"test {MEASURE}": best["test"],
                     "sd": best["test_sd"], "seeds": len(best["seeds"]), "source": "this study"})
        rows += [{"system": f"{RETRIEVAL_LABELS.get(system, system)}, passages up to {length} tokens",
                  f"test {MEASURE}": score, "sd": None, "seeds": None, "source": "this study (baselines)"}
                 for system, score in best["baselines_test"].items()]
    rows += [{"system": system, f"test {MEASURE}": score, "sd": None, "seeds": None, "source": f"published: {src}"}
             for system, score, src in _small_models()]
    return pd.DataFrame(rows, dtype=object)       # object: seed counts stay integers beside empty cells


def _best_against_lines(best: dict, cond: Condition) -> list[str]:
    """The report's sentences for `_best_against`, once its runs have two seeds or more."""
    lines, length = [], cond.overrides.get("model.p_max_len")
    if (e := best.get("length_effect")) is not None and e["p"] is not None:
        lines += [f"Passages up to {length} tokens against the profile's length, the same setting paired by seed "
                  f"({len(e['seeds'])} seeds, {e['precision']}): {e['diff']:+.3f}, 95 % CI {_interval(e['ci'])}, "
                  f"p = {e['p']:.3g}; the smallest difference these seeds detect at 80 % power is "
                  f"{e['detectable']:.3f}.", ""]
    tested = {system: c for system, c in best.get("published", {}).items() if c["p"] is not None}
    if tested:
        lines += ["Its runs' mean against each small published model (one-sample t over its seeds; the interval "
                  "holds the runs' noise only, not what differs between the settings: passage length, evaluation "
                  "code): " + "; ".join(f"{system} {c['diff']:+.3f}, 95 % CI {_interval(c['ci'])}, p = {c['p']:.3g}"
                                        for system, c in tested.items()) + ".", ""]
    return lines


def paper_gap(static_mean: float) -> float:
    """The paper's relative gain of dynamic over static (Table 4) applied to a static score here."""
    return static_mean * (PAPER_DYNAMIC / PAPER_STATIC - 1)


def conclusions(comparisons: list[dict], drift: pd.DataFrame | None = None) -> list[str]:
    """What the study concludes, sentence by sentence, from the verdicts (and `drift_table`, where
    the dynamic runs have it: how different the two arms' targets became)."""
    confirm = next((c for c in comparisons if "confirms" in c), None)
    done = [c for c in comparisons if c["complete"] and c["p"] is not None and "confirms" not in c]
    if not done:
        return ["No condition has two seeds or more in both arms yet: nothing is concluded."]
    lines = []
    power = next((c for c in done if c["condition"] == "power"), None)
    if power is not None and power["ci"] is not None:
        gap = paper_gap(power["static"])
        excluded = power["ci"][1] < gap
        lines.append(
            f"At the profile's setting ({len(power['seeds_dynamic'])} seeds per arm) dynamic minus static is "
            f"{power['diff']:+.3f} nDCG@10 (95 % CI {_interval(power['ci'])}, {power['test']}, p = {power['p']:.3g}); "
            f"the paper's relative gain would be {gap:+.3f} here, which this interval "
            f"{'excludes' if excluded else 'does not exclude'}."
            + ("" if power["detectable"] is None else f" The design detects {power['detectable']:.3f} at 80 % power."))
    better_dyn = [c for c in done if c["verdict"] == "dynamic better"]
    better_sta = [c for c in done if c["verdict"] == "static better"]
    level = [c["condition"] for c in done if c["verdict"].startswith("no difference") and not c["in_progress"]]
    running = [c for c in done if c["in_progress"]]
    for arm, better in (("Dynamic", better_dyn), ("Static", better_sta)):
        kept = [c for c in better if c["p_adjusted"] < ALPHA]
        leads = [c for c in better if c["p_adjusted"] >= ALPHA]
        if kept:
            lines.append(f"{arm} distillation is significantly better, after adjustment over {kept[0]['family']} "
                         "conditions, under: " + "; ".join(_adjusted_text(c) for c in kept) + ".")
        if leads:
            lines.append(f"{arm} distillation leads, significant alone but not after adjustment over "
                         f"{leads[0]['family']} conditions (a lead for fresh seeds, not a finding), under: "
                         + "; ".join(_adjusted_text(c) for c in leads) + ".")
    lines += [line for c in done if not c["in_progress"] and (line := teacher_control(c, comparisons))]
    if level:
        lines.append(f"No significant difference under: {', '.join(level)}.")
    if running:
        lines.append("Still running, so its numbers will move: " + "; ".join(
            f"{c['condition']} ({len(c['seeds_dynamic'])} of {c['seeds_planned']} seed pairs, {c['diff']:+.3f}, "
            f"95 % CI {_interval(c['ci'])})" for c in running) + ".")
    if confirm is not None and (line := confirmation(confirm)):
        lines.append(line)
    if drift is not None and not drift.empty:
        lines.append(
            "How far the dynamic arm's targets moved from the static arm's by the end of its runs (median "
            "KL(warm || joint) per training list, as a share of the retriever's own KL loss over its last 10 steps, "
            "and the lists whose top passage both re-rankers put first): "
            + "; ".join(f"{r['condition']} {r['KL(warm || joint), median per list']:.3f} nats "
                        f"({r['KL(warm || joint), median per list'] / r[KL_LOSS]:.2f}x), {r['same top passage']:.0%}"
                        for _, r in drift.iterrows()) + ".")
    if confirm is not None and confirmed(confirm):
        lines.append(f"The one difference a test of its own confirms: {confirm['verdict']} under {confirm['confirms']}, "
                     f"on its first seeds and again on fresh ones ({confirm['diff']:+.3f}, p = {confirm['p']:.3g}); "
                     "what that cannot say is listed below.")
    elif not better_dyn:
        lines.append("No condition run so far gives dynamic distillation a significant advantage on this collection; "
                     "what that cannot say is listed below.")
    elif not any(c["p_adjusted"] < ALPHA for c in better_dyn):
        lines.append("No condition run so far gives dynamic distillation an advantage that survives the adjustment "
                     "over conditions; what that cannot say is listed below.")
    return lines


def confirmed(c: dict) -> bool:
    """A finished confirmation whose own test is significant in its lead's direction."""
    return (c.get("confirms") is not None and c["complete"] and not c["in_progress"] and c["p"] is not None
            and c["verdict"].endswith(" better") and c["diff"] * c["lead_diff"] > 0)


def confirmation(c: dict) -> str | None:
    """The confirmation on fresh seeds in one sentence: confirmed only when its own test is
    significant in the lead's direction; None before its lead is known."""
    if c["confirms"] is None:
        return ("No condition had a run-level p below 0.05, so no lead was tested again on fresh seeds."
                if c["decided"] else None)
    seeds = (f"seeds {c['seeds_dynamic'][0]}-{c['seeds_dynamic'][-1]}" if c["complete"] and not c["in_progress"]
             else "fresh seeds")
    head = f"The lead of {c['confirms']}, tested again on {seeds} (one pre-stated test, not adjusted over conditions)"
    if not c["complete"] or c["p"] is None:
        pairs = len(c["seeds_dynamic"]) if c["complete"] else 0
        return f"{head}: still running, {pairs} of {c['seeds_planned']} seed pairs so far."
    tested = f"{c['diff']:+.3f}, 95 % CI {_interval(c['ci'])}, p = {c['p']:.3g}"
    if c["in_progress"]:
        return f"{head}: {len(c['seeds_dynamic'])} of {c['seeds_planned']} seed pairs so far, {tested}."
    held = confirmed(c)
    detectable = "" if c["detectable"] is None else f"; the detectable difference is {c['detectable']:.3f}"
    outcome = f"confirmed, {c['verdict']}." if held else f"not confirmed ({c['verdict']}){detectable}."
    return f"{head} ({c['lead_diff']:+.3f} there, p = {c['lead_p']:.3g}): {tested}; {outcome}"


def teacher_control(c: dict, comparisons: list[dict]) -> str | None:
    """For a condition whose static arm distils the re-ranker a reused dynamic arm ends with (frozen
    from the first step): where the lead of the condition it reuses comes from. The static arm's
    shift against that condition's static arm says what the better teacher alone gives; the
    condition's own difference says what a teacher that moves adds on top of it. None otherwise."""
    cond = condition(c["condition"])
    shift = next((s for s in c.get("arm_shifts", []) if s["arm"] == "static"), None)
    ref = next((r for r in comparisons if r["condition"] == cond.dynamic.reuse and r.get("ci") is not None), None)
    if not cond.trained_teacher or shift is None or shift["ci"] is None or ref is None:
        return None
    if shift["ci"][0] > 0 and c["ci"][1] <= 0:
        reading = ("the better teacher the dynamic runs end with accounts for their lead, and a teacher that moves "
                   "along the way adds nothing on top of it here")
    elif c["ci"][0] > 0:
        reading = "the dynamic arm still leads a frozen teacher as good as its own last one: a teacher that moves adds more"
    else:
        reading = "these seeds cannot tell the better teacher's share of the lead from the moving teacher's"
    return (f"Where the dynamic lead of {ref['condition']} ({ref['diff']:+.3f}) comes from, asked by {c['condition']}: a "
            f"static arm distilled from the re-ranker each of its dynamic runs ends with, frozen from the first step, "
            f"scores {shift['diff']:+.3f} (95 % CI {_interval(shift['ci'])}, p = {shift['p']:.3g}) against the static "
            f"arm of {ref['condition']}, and dynamic minus this static arm is {c['diff']:+.3f} (95 % CI "
            f"{_interval(c['ci'])}, p = {c['p']:.3g}; {c['p_adjusted']:.3g} adjusted): {reading}. That teacher is also "
            "sharper than the warm one (target entropy in the study's drift table), so its gain is that of a better and a "
            "sharper target together.")


def _adjusted_text(c: dict) -> str:
    """A significant condition with its p before and after the adjustment over conditions."""
    return f"{c['condition']} ({c['diff']:+.3f}, p = {c['p']:.3g}; {c['p_adjusted']:.3g} adjusted)"


LIMITS = (
    "One collection (SciFact: 809 training and 300 test queries), all-MiniLM-L6-v2 in place of ERNIE-2.0-base, "
    "lists of 8 and half an epoch at the profile's setting: the paper's gain was measured on MS MARCO with 500k "
    "queries; an effect that needs its scale cannot show here.",
    "Each condition changes one thing; their combination is not run.",
    "Grid conditions choose their setting on the validation slice with one seed, then report test over seeds; "
    "their tables show the profile's own run of that seed beside the candidates, since the best of a grid of "
    "changes can still score below no change at all.",
    "The confirmation is chosen by its lead's p on test, then run on fresh seeds over the same test queries: it "
    "asks whether the lead survives new runs, not whether it holds on new queries.",
    "Runs of another precision are kept apart, never pooled; a condition with runs in two precisions reports "
    "the one with more complete seed pairs.",
)


def study_summary(folder: str | Path) -> str | None:
    """The study's verdict on dynamic vs static at the profile's setting, in one paragraph for the
    main report's Table 4 section; None where the study has no complete power comparison."""
    path = Path(folder) / "results.json"
    if not path.exists():
        return None
    comparisons = json.loads(path.read_text())["comparisons"]
    power = next((c for c in comparisons if c["condition"] == "power" and c["complete"] and c["ci"] is not None), None)
    if power is None:
        return None
    others = [c for c in comparisons if c["condition"] != "power" and c["complete"] and c.get("p") is not None
              and "confirms" not in c]
    confirm = next((confirmation(c) for c in comparisons if "confirms" in c), None)
    better = [c for c in others if c["verdict"].endswith(" better")]
    across = (f" Of its {len(others)} other conditions tested so far ({', '.join(c['condition'] for c in others)}), "
              + ("; ".join(f"{c['condition']}: {verdict_text(c)} ({c['diff']:+.3f}, p = {c['p']:.3g}, "
                           f"{c['p_adjusted']:.3g} adjusted{', still running' if c['in_progress'] else ''})"
                           for c in better) if better else "none gives either arm a significant advantage")
              + "; the verdicts of all are in its report." + (f" {confirm}" if confirm else "")
              + "".join(f" {line}" for c in others if not c["in_progress"] and (line := teacher_control(c, comparisons))))
    return (f"The distillation study ([{Path(folder).name}/report.md](../{Path(folder).name}/report.md)) reruns "
            f"this comparison over {len(power['seeds_dynamic'])} seeds per arm ({power['precision']}): dynamic "
            f"{power['dynamic']:.3f} ± {power['dynamic_sd']:.3f}, static {power['static']:.3f} ± {power['static_sd']:.3f} "
            f"{MEASURE}; dynamic - static {power['diff']:+.3f} (95 % CI {_interval(power['ci'])}, {power['test']}, "
            f"p = {power['p']:.3g}); verdict: {power['verdict']}, against a detectable difference of "
            f"{power['detectable']:.3f}." + across)


def write_study(records: list[dict], out: str | Path, profile: str = "scifact") -> dict:
    """results.json, tables/, figures/ and report.md of a study folder; returns what was written."""
    out = Path(out)
    comparisons = compare_all(records)
    bests = [best_retriever(records, c) for c in BEST_OF]
    tables, figures = out / "tables", out / "figures"
    written = {"conditions": write_table(conditions_table(comparisons), tables, "conditions",
                                         f"Dynamic vs static distillation by condition, test {MEASURE}.")}
    power = next((c for c in comparisons if c["condition"] == "power" and c["complete"]), None)
    figs = {"differences": save(differences_figure(comparisons, paper_gap(power["static"]) if power else None),
                                figures / "differences.png")}
    for cond in CONDITIONS:
        if not any(r["condition"] == cond.key for r in records):
            continue                          # a condition with no run of its own draws nothing
        fig = curves_figure(records, cond)
        if fig is not None:
            figs[f"curves_{cond.key}"] = save(fig, figures / f"curves_{cond.key}.png")
    extra = {"teachers": teacher_table(out), "drift": drift_table(records), "reranker": reranker_table(records),
             "clipping": clip_table(records), "shifts": shift_table(comparisons),
             "wall_time": wall_time_table(records)}
    for name, frame in extra.items():
        if not frame.empty:
            written[name] = write_table(frame, tables, name, float_format="{:.3f}")
    rows = [{"condition": c["condition"], "metric": k, "value": c[k]} for c in comparisons if c["complete"]
            for k in ("static", "dynamic", "diff", "p", "p_adjusted", "query_p", "detectable") if c.get(k) is not None]
    rows += [{"condition": b["condition"], "metric": k, "value": b[k]} for b in bests if "test" in b
             for k in ("test", "test_sd", "source_test") if b.get(k) is not None]
    write_json(out / "results.json", {"measure": MEASURE, "comparisons": comparisons, "best": bests, "rows": rows})
    text = render(records, comparisons, bests, extra, figs, out, profile)
    (out / "report.md").write_text(text)
    return {"tables": {k: str(v) for k, v in written.items()}, "figures": {k: str(v) for k, v in figs.items()},
            "conclusions": conclusions(comparisons, extra["drift"])}


def _md(frame: pd.DataFrame, fmt: str = "{:.3f}") -> str:
    from .tables import markdown_table

    return markdown_table(frame, fmt)


# What the report says above each of the tables read off the runs' records.
TABLE_PROSE = {
    "drift": f"Drift: how far each dynamic run's re-ranker ended from the warm one it started as, on {DRIFT_LISTS} of "
             "its training lists (a fixed sample) at its distillation temperature. KL(warm || joint) is the distance "
             "between the static arm's targets and the dynamic arm's last ones (the warm targets' entropy is in the "
             "table above); the retriever's own KL loss beside it is the scale of what it was still learning.",
    "reranker": f"The joint re-ranker against its teacher: its validation curve (each dynamic arm's runs that drew one, "
                f"{MEASURE} on the validation pool) at step 0, where it is the warm re-ranker, at its lowest and at the "
                "last step (means over runs), how many runs fall below the teacher at some step and the largest fall "
                "(negative: none fell): what a cold optimizer can cause.",
    "clipping": "Gradient clipping at norm 1.0, one global norm over both towers as the official code clips (each "
                "tower apart under tower-clip): the share of steps whose retriever gradient the clip scaled down, the "
                "median factor it scaled it by, and each tower's median gradient norm before the clip. Adam divides "
                "each step by a running average of the gradient's scale, so a factor that holds steady changes little; "
                "one that varies from step to step reweights the steps.",
}


def _shift_lines(frame: pd.DataFrame) -> list[str]:
    """The report's lines for `shift_table`, none before a change has two seeds paired."""
    if frame.empty:
        return []
    return ["What each change did to the arms it trains, against the same arm of the runs it changes (paired by "
            "seed, not adjusted over conditions): a change can move both arms and leave the gap where it was.", "",
            _md(frame), ""]


def render(records, comparisons, bests, extra, figs, out: Path, profile: str) -> str:
    machines = sorted({r["machine"] for r in records if r.get("machine")})
    commits = sorted({r["commit"] for r in records if r.get("commit")})
    precisions = sorted({str(r["precision"]) for r in records})
    lines = [f"# Does dynamic distillation beat static on {profile}? The distillation study", "",
             f"Made by `rqakit study --profile {profile}` from the {len(records)} run files in `runs/` "
             f"(precision: {', '.join(precisions)}; kit commits: {', '.join(commits)}; machines: "
             f"{'; '.join(machines)}).", "",
             "## The question", "",
             f"The paper's Table 4 (MS MARCO dev, 8 instances per query) gives the dynamic retriever "
             f"{PAPER_DYNAMIC} MRR@10 against {PAPER_STATIC} with static distillation, a "
             f"{100 * (PAPER_DYNAMIC / PAPER_STATIC - 1):.1f} % relative gain. Each condition below trains both arms on "
             "the same seeds (the same data order and initial random state), so runs pair by seed.", "",
             "## Verdicts", "", _md(conditions_table(comparisons)), "",
             f"![differences]({figs['differences'].relative_to(out)})", "",
             "Run-level: a paired t-test over the per-seed differences of test nDCG@10 (each run one number); its "
             "95 % interval and the smallest difference it detects at 80 % power. Query-level: per-query values "
             "averaged over each arm's seeds, a paired t-test over queries and a bootstrap interval; it holds the "
             "test queries' noise, not the runs', so it is narrower and is not the test of the claim. p adjusted: "
             "the run-level p after Benjamini-Hochberg over the conditions tested, the one to read before calling "
             "any single condition's difference a finding; the confirmation on fresh seeds is one test chosen "
             "before its runs, so it stands outside that family.", "",
             "## What the study concludes", "", *[f"- {s}" for s in conclusions(comparisons, extra["drift"])], "",
             *_shift_lines(extra["shifts"]),
             "What it cannot conclude:", "",
             *[f"- {s}" for s in (*LIMITS, *_teacher_limits(out, records, extra["reranker"]),
                                  *_machine_limits(records, comparisons))], "",
             "## Before any new run: what the profile's own runs show", ""]
    if not extra["teachers"].empty:
        lines += ["Static targets: the warm re-ranker's softmax over each training list (the same lists both arms "
                  "train on), by temperature.", "", _md(extra["teachers"]), ""]
    for checked in teacher_checks(out):
        lines += [f"Teacher check, {checked['teacher']}: {verdict_line(checked['leads'])}.", ""]
    for name, text in TABLE_PROSE.items():
        if not extra[name].empty:
            lines += [text, "", _md(extra[name]), ""]
    lines += ["## Conditions", "",
              "Each condition's curves: every `joint.eval_every` steps, each model ranks a fixed pool per validation "
              "query (the union of BM25's and the warm retriever's top 10), cheap enough to repeat through training; "
              "bands are ± 1 sd over seeds, the gap's band its 95 % interval. The seed tables' val column is "
              "retrieval over the whole corpus after training, so its level differs from the curves' last point.", ""]
    for cond, comp in zip(COMPARED, comparisons):
        lines += [f"### {cond.title}{' (extension)' if cond.extension else ''}", "", cond.question, ""]
        if cond.confirms:
            if comp["confirms"] is None:
                lines += [(confirmation(comp) or "Not run yet: the lead is chosen once "
                           f"{', '.join(cond.confirms)} are complete."), ""]
                continue
            planned = comp["planned_detectable"]
            lines += [f"Arms: those of {comp['confirms']} (dynamic - static {comp['lead_diff']:+.3f} there, run-level "
                      f"p = {comp['lead_p']:.3g}), on seeds {', '.join(map(str, cond.seeds))}."
                      + ("" if planned is None else f" If they spread as the lead's seeds did, {len(cond.seeds)} fresh "
                         f"pairs detect {planned:.3f} at 80 % power; a lead read off the smallest of several p "
                         "overstates its effect, so the design may miss a smaller true one."), ""]
        else:
            spec = "; ".join(f"{arm}: {arm_text(a)}" for arm, a in cond.arms().items())
            lines += [f"Arms: {spec}.", ""]
        if cond.grid:
            lines += [_md(grid_table(records, cond), "{:.4f}"), ""]
        seeds = seed_table(records, cond)
        if not seeds.empty:
            lines += [_md(seeds, "{:.4f}"), ""]
        if comp["complete"]:
            tested = "" if comp["p"] is None else f", 95 % CI {_interval(comp['ci'])}, p = {comp['p']:.3g}"
            lines += [f"Verdict: **{verdict_text(comp)}** (dynamic - static {comp['diff']:+.3f}{tested}; "
                      f"precision {comp['precision']}"
                      + (f"; runs in {', '.join(comp['other_precisions'])} left out" if comp["other_precisions"] else "")
                      + (f"; its runs come from {len(comp['machines'])} machines of that precision, paired by seed "
                         "whichever each ran on" if len(comp.get("machines", ())) > 1 else "")
                      + ").", ""]
        else:
            lines += ["Not run yet.", ""]
        if comp.get("arm_shifts"):
            lines += [f"What the change did to the arms it touched: {shift_text(comp)}.", ""]
        lines += _teacher_source_lines(records, cond)
        if f"curves_{cond.key}" in figs:
            lines += [f"![curves]({figs[f'curves_{cond.key}'].relative_to(out)})", ""]
    for cond, best in zip(BEST_OF, bests):
        lines += [f"### {cond.title}{' (extension)' if cond.extension else ''}", "", cond.question, ""]
        if best["chosen"] is None:
            lines += [f"Not run yet: the setting is chosen once {', '.join(cond.best_of)} are complete.", ""]
            continue
        chosen = best["chosen"]
        lines += [f"Chosen on validation: {chosen['condition']}, {chosen['arm']} arm (mean validation {MEASURE} "
                  f"{chosen['val']:.3f} over {chosen['seeds']} seeds), retrained with "
                  + ", ".join(f"{k} = {v}" for k, v in cond.overrides.items())
                  + f" on seeds {', '.join(map(str, cond.seeds))}.", "", _md(best_table(best, cond)), ""]
        lines += _best_against_lines(best, cond)
        for o in best.get("outside", []):
            lines += [f"Higher on validation, but not a candidate: {o['condition']}, {o['arm']} arm (mean validation "
                      f"{o['val']:.3f} over {o['seeds']} seeds; test {o['test']:.3f}"
                      + (f" ± {o['test_sd']:.3f}" if o["test_sd"] is not None else "")
                      + f" at the profile's passage length). It belongs to \"{condition(o['condition']).title}\", a control "
                      "of the distillation question, not one of the candidate settings; its section says what it "
                      "needs to train.", ""]
        done = f"{len(best.get('seeds', []))} of {len(cond.seeds)} seeds"
        lines += [f"{done}; precision of its runs: {', '.join(best.get('precision', [])) or 'none yet'}.", ""]
    lines += ["## Order and cost", "",
              "Conditions run in this order, by what each decides per hour of a 2-core CPU: the paper's questions "
              "and a lead tested again, then what could hide an effect, the user's question last: "
              + ", ".join(c.key for c in CONDITIONS)
              + f". `rqakit plan --profile {profile} --study` estimates what is left on the machine at hand.", ""]
    if not extra["wall_time"].empty:
        lines += [_md(extra["wall_time"], "{:.2f}"), "",
                  "Wall time: each exported run as its stage folder timed it (a teacher it trained first included), "
                  "and the first stages a condition's overrides rebuild apart from the profile's, each counted once; "
                  "runs exported before their records named those stages count their own training only.", ""]
    lines += ["## Recomputing a run", "",
              "Every file in `runs/` names its condition, overrides, seed and stage folder hash. To recompute one, "
              f"move its file away and run `rqakit study --profile {profile} --conditions CONDITION --seeds SEED`: "
              "it trains the run unless its stage folder is here, into the folder hash the file names on a CPU of "
              f"the same precision, and exports it again. `rqakit study --profile {profile}` trains and exports "
              f"every missing run; `rqakit study --profile {profile} --report` rebuilds this report from the run "
              "files alone.", ""]
    return "\n".join(lines)

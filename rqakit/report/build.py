"""The report of a profile: `results.json`, tables, figures, the paper's side tables, `report.md`.

    build_report(Workspace(cfg), "reports/toy")

reads the stage folders (it trains nothing) and writes under the report folder:

    results.json                    every number as a tidy row (rqakit.report.results)
    tables/table2_retrieval.{csv,md}   Table 2 analogue       tables/table3_rerank.*    Table 3 analogue
    tables/table4_ablation.*        Table 4 analogue          tables/list_size.*        Figure 4 analogue
    tables/paired_test.*            dynamic vs static         tables/hybrid.*           fusion chosen on val
    tables/paper_*.{csv,md}         the paper's own numbers, apart
    figures/list_size.png, mutual_improvement.png, denoising.png, warmup_loss.png
    report.md
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pandas as pd

from .. import __version__
from ..artifacts import KIT_COMMIT, machine, read_manifest
from ..atomic import write_json as write_json_atomic
from ..config import report_hash
from ..runtime import compute_dtype_name
from . import figures, paper, results, tables
from .chapter import read_chapter, read_chapter_times

WALL_START, WALL_END = "<!-- wall-time:start -->", "<!-- wall-time:end -->"
ALPHA = 0.05


def stamp(ws) -> dict:
    return {"profile": ws.cfg.profile, "kit_version": __version__, "git_commit": KIT_COMMIT,
            "config_hash": report_hash(ws.cfg), "machine": machine(),
            "precision": compute_dtype_name(ws.cfg.runtime.device),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def chapter_rows(out_dir: str | Path) -> list[dict]:
    """Run rows of the notebooks' wall times (chapters.json) and of the whole reproduction."""
    times = read_chapter_times(out_dir)
    rows = []
    for name, record in times["chapters"].items():
        figures_ = {k: record[k] for k in ("wall_time_s", "overhead_s") if record.get(k) is not None}
        rows += results.metric_rows("run", name, None, figures_)
    if times.get("reproduce_wall_time_s") is not None:
        rows.append(results.row("run", "reproduce", None, "wall_time_s", times["reproduce_wall_time_s"]))
    return rows


def collect(ws, out_dir: str | Path) -> dict:
    """Everything the report shows: rows, hybrid choices, the paired test, the joint runs."""
    runs = results.planned_joint_runs(ws)
    hybrid, choices = results.hybrid_rows(ws, runs)
    test = results.dynamic_vs_static(ws, runs)
    rows = (results.baseline_rows(ws) + results.warm_rerank_rows(ws) + results.joint_rows(ws, runs) + hybrid
            + results.paired_rows(test) + results.stage_rows(ws, runs) + chapter_rows(out_dir))
    results.check_rows(rows)
    return {"rows": rows, "choices": choices, "paired": test, "runs": runs}


def write_results(out_dir: str | Path, rows: list[dict]) -> Path:
    results.check_rows(rows)
    path = Path(out_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, rows)
    return path


def update_run_rows(out_dir: str | Path, new_rows: list[dict]) -> Path | None:
    """Replace rows with the same (table, system, seed, metric) in results.json, append the rest."""
    path = Path(out_dir) / "results.json"
    if not path.exists():
        return None
    key = lambda r: (r["table"], r["system"], r["seed"], r["metric"])  # noqa: E731
    fresh = {key(r) for r in new_rows}
    rows = [r for r in json.loads(path.read_text()) if key(r) not in fresh] + list(new_rows)
    return write_results(out_dir, rows)


# ------------------------------------------------------------------------------ tables and figures
def write_tables(ws, frame: pd.DataFrame, data: dict, folder: Path) -> dict[str, Path]:
    from ..stages.ablations import ablation_list_size

    cfg, measures = ws.cfg, list(ws.cfg.evaluate.measures)
    written = {
        "table2": tables.write_table(tables.table2(frame, measures), folder, "table2_retrieval",
                                     "Table 2 analogue: first-stage retrieval, test queries (mean ± sd over seeds)."),
        "table3": tables.write_table(tables.table3(frame, measures, cfg.evaluate.rerank_depth), folder, "table3_rerank",
                                     f"Table 3 analogue: re-ranking the top-{cfg.evaluate.rerank_depth}, test queries."),
        "table4": tables.write_table(tables.table4(frame, measures, ablation_list_size(cfg)), folder, "table4_ablation",
                                     "Table 4 analogue: the retriever under each ablation, test queries (mean ± sd)."),
        "list_size": tables.write_table(tables.list_size_table(frame), folder, "list_size",
                                        "Figure 4 analogue: instances per query vs test nDCG@10 (dynamic)."),
        "paired": tables.write_table(tables.paired_table(data["paired"]), folder, "paired_test",
                                     "Dynamic vs static distillation: per-query test nDCG@10 averaged over seeds; "
                                     "paired t-test (scipy.stats.ttest_rel) and Wilcoxon signed-rank test."),
        "hybrid": tables.write_table(tables.hybrid_table(data["choices"], measures), folder, "hybrid",
                                     "Hybrid: BM25 + dynamic retriever; method and BM25 weight chosen on the "
                                     "validation runs, applied once to test."),
    }
    quality = ws.folder("augment") / "denoising.json"
    if quality.exists():
        written["denoising"] = tables.write_table(denoising_table(json.loads(quality.read_text())), folder, "denoising",
                                                  "Denoising against the known unlabelled positives (rqakit/toy).")
    summary = ws.folder("augment") / "summary.json"
    settings = json.loads(summary.read_text()).get("calibration_settings") if summary.exists() else None
    if settings:
        a = cfg.augment
        used = f"platt, prior {a.calibration_prior}" if a.calibration == "platt" else a.calibration
        written["calibration"] = tables.write_table(
            calibration_table(settings), folder, "calibration",
            f"Denoising under each calibration of the same warm CE scores (thresholds {a.neg_threshold} / "
            f"{a.pos_threshold}; rank rule from rank {a.rank_keep_from}). The lists use: {used}.")
    for name, frame_ in paper.paper_tables().items():
        written[f"paper_{name}"] = tables.write_table(frame_, folder, f"paper_{name}",
                                                      f"{paper.CAPTIONS[name]} Source: {paper.SOURCE}.",
                                                      float_format="{:.1f}")
    return written


def denoising_table(quality: dict) -> pd.DataFrame:
    """Precision / recall of what denoising kept out of the negatives (toy ground truth)."""
    labels = {"dropped": "dropped as false negatives", "pseudo": "pseudo-positives", "kept_out": "either"}
    out = []
    for key, label in labels.items():
        pr = quality.get(key) or {}
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
        out.append({"flagged by the CE": label, "flagged": pr.get("flagged"), "truly unlabelled positives": pr.get("true"),
                    "precision": fmt(pr.get("precision")), "recall": fmt(pr.get("recall"))})
    return pd.DataFrame(out)


def calibration_table(settings: dict) -> pd.DataFrame:
    """Pseudo-positives, denoised negatives and dropped candidates under each calibration of the
    same warm CE scores (augment's `calibration_settings`), with the logits where 0.1 / 0.9 fall."""
    out = []
    for name, counts in settings.items():
        logits = {k.replace("logit_at_", "logit at p = "): f"{v:.2f}" for k, v in counts.items() if k.startswith("logit_at_")}
        out.append({"calibration": name, "pseudo-positives": counts.get("pseudo_positives", ""),
                    "denoised negatives": counts.get("denoised_negatives", ""),
                    "dropped as false negatives": counts.get("dropped_as_false_negative", ""), **logits,
                    "note": counts.get("error", "")})
    return pd.DataFrame(out).fillna("")


def write_figures(ws, frame: pd.DataFrame, data: dict, folder: Path) -> dict[str, Path]:
    out = {"list_size": figures.save(figures.list_size_figure(tables.list_size_summary(frame)), folder / "list_size.png")}
    first = results.first_dynamic(ws, data["runs"])
    static = [r for r in results.main_runs(ws, data["runs"], "static") if r.seed == first.seed]
    out["curves"] = figures.save(figures.curves_figure(_curves(first.folder), _curves(static[0].folder) if static else None),
                                 folder / "mutual_improvement.png")
    candidates = ws.folder("augment") / "candidates.parquet"
    if candidates.exists():
        a = ws.cfg.augment
        out["denoising"] = figures.save(figures.denoising_figure(pd.read_parquet(candidates), a.neg_threshold, a.pos_threshold),
                                        folder / "denoising.png")
    histories = {name: json.loads((ws.folder(name) / "history.json").read_text())
                 for name in ("warmup_de", "warmup_ce") if (ws.folder(name) / "history.json").exists()}
    if histories:
        out["warmup_loss"] = figures.save(figures.training_figure(histories), folder / "warmup_loss.png")
    return out


def _curves(folder: Path) -> list[dict]:
    path = Path(folder) / "curves.json"
    return json.loads(path.read_text()) if path.exists() else []


# ------------------------------------------------------------------------------ report.md
def _system_mean(frame: pd.DataFrame, table: str, system: str, metric: str) -> tuple[float, int]:
    hit = frame[(frame["table"] == table) & (frame["system"] == system) & (frame["metric"] == metric)]["value"]
    return (float(hit.mean()), len(hit)) if len(hit) else (math.nan, 0)


def _apart(a: float, b: float) -> tuple[str, str]:
    """a and b with three decimals, or with as many more (up to five) as it takes to tell them apart."""
    for digits in (3, 4, 5):
        fa, fb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if fa != fb:
            break
    return fa, fb


def _versus(a: float, b: float) -> tuple[str, str, str]:
    """("beats" or "does not beat", a, b), the numbers as `_apart` writes them."""
    return ("beats" if a > b else "does not beat", *_apart(a, b))


def _over(n: int) -> str:
    return f"mean over {n} seed{'s' if n != 1 else ''}"


def headline(frame: pd.DataFrame, test: dict, measure: str = "nDCG@10", depth: int | None = None) -> list[str]:
    """The report's first lines: dynamic vs BM25, the st-mnrl peer and the untrained fusion of BM25
    and the backbone; the hybrid vs that fusion; dynamic vs static; the joint re-ranker vs the warm one
    on BM25's top `depth` (Table 3's claim); numbers always."""
    dyn, n = _system_mean(frame, "retrieval", "dynamic", measure)
    lines = []
    fusion = "the untrained fusion of BM25 and the zero-shot backbone (fusion-zeroshot, RRF k = 60)"
    for system, label in (("bm25", "BM25"), ("st-mnrl", "the sentence-transformers MNRL peer (st-mnrl)"),
                          ("fusion-zeroshot", fusion)):
        other, _ = _system_mean(frame, "retrieval", system, measure)
        if math.isnan(other):
            lines.append(f"- {label} was not run for this profile, so the dynamic retriever is not compared with it.")
            continue
        verb, ours, theirs = _versus(dyn, other)
        lines.append(f"- The dynamic retriever **{verb}** {label} on test {measure}: {ours} ({_over(n)}) vs {theirs}.")
    hybrid, n_hybrid = _system_mean(frame, "retrieval", "hybrid", measure)
    other, _ = _system_mean(frame, "retrieval", "fusion-zeroshot", measure)
    if not math.isnan(hybrid) and not math.isnan(other):
        verb, ours, theirs = _versus(hybrid, other)
        lines.append(f"- BM25 fused with the dynamic retriever (hybrid) **{verb}** {fusion}: {ours} "
                     f"({_over(n_hybrid)}) vs {theirs}.")
    verb, ours, theirs = _versus(test["dynamic"], test["static"])
    significant = "significant" if test["p_ttest"] < ALPHA else "not significant"
    lines.append(
        f"- Dynamic distillation **{verb}** static distillation on test {measure}: {ours} vs "
        f"{theirs} (diff {test['diff']:+.3f}; paired t-test p = {test['p_ttest']:.3g}, Wilcoxon "
        f"signed-rank p = {test['p_wilcoxon']:.3g}, {test['n_queries']} test queries, per-query values averaged "
        f"over {test['seeds_dynamic']} dynamic and {test['seeds_static']} static seeds): {significant} at {ALPHA} "
        "by the t-test.")
    joint, n_joint = _system_mean(frame, "rerank", "joint_ce@bm25", measure)
    warm, _ = _system_mean(frame, "rerank", "warmup_ce@bm25", measure)
    if not math.isnan(joint) and not math.isnan(warm):
        verb, ours, theirs = _versus(joint, warm)
        top = f"BM25's top {depth}" if depth else "BM25's top candidates"
        lines.append(f"- The joint re-ranker of the dynamic runs **{verb}** the warm re-ranker on {top}, test {measure}: "
                     f"{ours} ({_over(n_joint)}) vs {theirs}.")
    return lines


def scope(cfg) -> str:
    """What a profile with a real backbone shows and does not show, from its own settings."""
    j = cfg.joint
    return (f"> This profile trains `{cfg.model.backbone}` on `{cfg.data.train}` with lists of m = {j.list_size} "
            f"and {j.epochs:g} epoch{'s' if j.epochs != 1 else ''} of joint training. It tests the paper's claims "
            "(dynamic over static distillation, the ablations, list size, both models improving together) at "
            "this scale and on this collection. It does not reproduce the paper's figures, which come from "
            "ERNIE-base on MS MARCO and NQ with lists of 128 on up to 32 GPUs: those stay in their own tables "
            "below.")


def wall_time_section(ws, out_dir: str | Path, runs: list) -> str:
    """Wall time per chapter (chapters.json) and per stage (manifests), mean step time of training."""
    times = read_chapter_times(out_dir)
    lines = [WALL_START, "## Wall time", ""]
    if times["chapters"]:
        built = chapter_stage_seconds(out_dir, sorted(times["chapters"]))
        frame = pd.DataFrame([{"chapter": name, "wall time (s)": _num(r.get("wall_time_s")),
                               "attempts": r.get("attempts", 1), "mean load": _num(r.get("load_mean"), 2),
                               "overhead: kernel + imports (s)": _num(r.get("overhead_s")),
                               "build time of its stages (s)": _num(built[name]),
                               "kit commit": chapter_commit(out_dir, name),
                               "last status": r.get("status", "")} for name, r in times["chapters"].items()])
        lines += [tables.markdown_table(frame), ""]
        if times.get("reproduce_wall_time_s") is not None:
            lines += [f"Whole reproduction (sum of the chapters, each as last run, its attempts summed): "
                      f"{times['reproduce_wall_time_s']:.1f} s. A chapter run again over cached stages takes "
                      "seconds; the build time of its stages (each stage counted in the first chapter that read it) is "
                      "what computing its results cost.", ""]
    else:
        lines += ["No chapter times yet (the notebooks were not run through `rqakit reproduce`).", ""]
    stage = []
    for system, seed, folder in results.stage_folders(ws, runs):
        manifest = json.loads((folder / "manifest.json").read_text())
        step = results.mean_step_s(folder) if manifest.get("steps") else None
        stage.append({"stage": manifest.get("stage") or (system if seed is None else f"{system}-s{seed}"),
                      "folder": folder.name, "wall time (s)": _num(manifest.get("wall_time_s")),
                      "attempts": manifest.get("attempts", 1), "CPU share": _num(manifest.get("cpu_share"), 2),
                      "precision": manifest.get("compute_dtype", ""),
                      "mean load": _num(manifest.get("load_mean"), 2),
                      "steps": manifest.get("steps", ""),
                      "mean step (s)": _num(step, 3),
                      "kit commit": ", ".join(manifest.get("git_commits") or [manifest.get("git_commit", "")])})
    if stage:
        lines += ["Stages (from their manifests; a stage reused from the cache keeps the time of the run that "
                  "built it, summed over its attempts when it was killed and resumed; CPU share is the CPU time it "
                  "got over its threads x its wall time, where recorded: below 1, other jobs shared the CPU and "
                  f"the stage reads slow; mean load is the 1-minute load average while it ran, on {os.cpu_count()} "
                  "cores here; precision: the dtype it computed in; kit commit: the code each recorded attempt ran):", "",
                  tables.markdown_table(pd.DataFrame(stage)), ""]
    return "\n".join(lines + [WALL_END])


def chapter_stage_seconds(out_dir, chapters) -> dict[str, float | None]:
    """{chapter: wall time of the stage folders it built}, from their manifests: a stage belongs to
    the first chapter (in order) that read it. None where a chapter recorded none."""
    seen, out = set(), {}
    for chapter in chapters:
        total, found = 0.0, False
        for folder in (read_chapter(out_dir, chapter) or {}).get("stages", {}):
            manifest = read_manifest(Path(folder))
            if folder in seen or manifest is None:
                continue
            seen.add(folder)
            total += float(manifest.get("wall_time_s") or 0.0)
            found = True
        out[chapter] = total if found else None
    return out


def chapter_commit(out_dir, chapter: str) -> str:
    return (read_chapter(out_dir, chapter) or {}).get("git_commit", "")


def _num(v, digits: int = 1) -> str:
    return "" if v is None else f"{float(v):.{digits}f}"


def render_report(ws, out_dir: Path, head: list[str], data: dict, written: dict, figs: dict, stamp_: dict) -> str:
    from ..stages.ablations import ablation_list_size

    cfg = ws.cfg
    table4_m = ablation_list_size(cfg)
    rel = lambda p: Path(p).relative_to(out_dir).as_posix()  # noqa: E731
    md = lambda key: Path(written[key]).read_text().strip()  # noqa: E731
    parts = [f"# RocketQAv2 reproduction: profile `{cfg.profile}`", "", *head, ""]
    if cfg.model.backbone == "tiny":
        parts += ["> This profile trains a **random tiny BERT** on a small collection: its numbers only show that "
                  "the pipeline runs end to end, not what RocketQAv2 achieves.", ""]
    else:
        parts += [scope(cfg), ""]
    parts += ["| stamp | |", "|---|---|", *[f"| {k} | {v} |" for k, v in stamp_.items()], "",
              f"Data: train `{cfg.data.train}`, test `{cfg.data.eval or 'held out of train'}`; backbone "
              f"`{cfg.model.backbone}`; list size m = {cfg.joint.list_size} (Table 4: m = {table4_m}); "
              f"seeds {list(cfg.ablations.seeds)} "
              f"(other variants {list(cfg.ablations.variant_seeds)}); list sizes of the list-size study "
              f"{list(cfg.ablations.list_sizes)}. Every number is in `results.json`.", "",
              *[f"- Profile note, {key}: {value}" for key, value in (cfg.notes or {}).items()], "",
              "## Retrieval (Table 2 analogue)", "", md("table2"), "",
              "The hybrid rows fuse BM25 with the dynamic (hybrid) or the static (hybrid-static) retriever; the fusion "
              "method and weight are chosen on the validation runs only. fusion-zeroshot fuses BM25 with the "
              "zero-shot backbone by plain RRF (k = 60): nothing trained, nothing chosen.", "", md("hybrid"), "",
              "## Re-ranking (Table 3 analogue)", "", md("table3"), "",
              "Re-ranked on test: BM25's and the warm retriever's top candidates by the warm re-ranker; each "
              "dynamic run's own retriever candidates by that run's re-ranker (every seed and list size), and BM25's "
              "by the same re-ranker (every seed at the main list size). A static "
              "run keeps the warm re-ranker; the pointwise and no-denoise runs enter Table 4 through their "
              "retrievers only, so their re-rankers are not evaluated.", "",
              "## Ablations (Table 4 analogue)", "", md("table4"), "", md("paired"), "",
              "## List size (Figure 4 analogue)", "", md("list_size"), "", f"![list size]({rel(figs['list_size'])})", "",
              "## Mutual improvement", "",
              "Both models of the first dynamic seed on the validation slice during joint training, beside the static "
              "run of the same seed (the paper has no such figure; it argues mutual improvement through Tables 3-4). "
              f"Only these two runs draw curves, every {cfg.joint.eval_every} steps.", "",
              f"![mutual improvement]({rel(figs['curves'])})", ""]
    if "denoising" in figs:
        parts += ["## Denoising", "", f"![denoising]({rel(figs['denoising'])})", ""]
        if "denoising" in written:
            parts += [md("denoising"), ""]
    if "calibration" in written:
        parts += ["## Calibration", "", md("calibration"), ""]
    if "warmup_loss" in figs:
        parts += ["## Warm-up training loss", "", f"![warm-up loss]({rel(figs['warmup_loss'])})", ""]
    parts += ["## The paper's own numbers (side tables)", "",
              "MS MARCO and NQ with ERNIE-base on up to 32 GPUs: other collections and models than this profile's, "
              "so they are shown apart and never compared cell by cell. R@k in the paper is a hit rate.", ""]
    for name in ("table2", "table3", "table4", "figure4"):
        parts += [md(f"paper_{name}"), ""]
    parts += [wall_time_section(ws, out_dir, data["runs"]), ""]
    return "\n".join(parts)


def build_report(ws, out_dir: str | Path) -> dict:
    """Write every table, figure and `report.md` of the profile; returns the paths and the headline."""
    out_dir = Path(out_dir).resolve()
    data = collect(ws, out_dir)
    frame = pd.DataFrame(data["rows"])
    results_path = write_results(out_dir, data["rows"])
    written = write_tables(ws, frame, data, out_dir / "tables")
    figs = write_figures(ws, frame, data, out_dir / "figures")
    stamp_ = stamp(ws)
    report = out_dir / "report.md"
    head = headline(frame, data["paired"], depth=ws.cfg.evaluate.rerank_depth)
    report.write_text(render_report(ws, out_dir, head, data, written, figs, stamp_))
    return {"results": str(results_path), "report": str(report), "tables": {k: str(v) for k, v in written.items()},
            "figures": {k: str(v) for k, v in figs.items()}, "headline": head,
            "paired_test": data["paired"], "hybrid": data["choices"], "stamp": stamp_}


def refresh_wall_times(ws, out_dir: str | Path) -> None:
    """Re-render the wall-time section of report.md and the chapter rows of results.json."""
    out_dir = Path(out_dir)
    report = out_dir / "report.md"
    if not report.exists():
        return
    runs = results.planned_joint_runs(ws)
    text = report.read_text()
    start, end = text.find(WALL_START), text.find(WALL_END)
    if start >= 0 and end > start:
        text = text[:start] + wall_time_section(ws, out_dir, runs) + text[end + len(WALL_END):]
        report.write_text(text)
    update_run_rows(out_dir, chapter_rows(out_dir))

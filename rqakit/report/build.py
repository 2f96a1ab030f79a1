"""The report of a profile: `results.json`, tables, figures, the paper's side tables, `report.md`.

    build_report(Workspace(cfg), "reports/toy")

reads the stage folders (it trains nothing) and writes under the report folder:

    results.json                    every number as a tidy row (rqakit.report.results); timings.json the machine's times
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
import time
from pathlib import Path

import pandas as pd

from .. import __version__
from ..artifacts import KIT_COMMIT, machine, read_manifest
from ..atomic import write_json as write_json_atomic
from ..config import report_hash
from ..runtime import compute_dtype_name
from ..stage_folder import StageFolder
from ..stages import teacher
from . import figures, paper, published, results, tables
from .chapter import read_chapter, read_chapter_times
from .study import study_summary

WALL_START, WALL_END = "<!-- wall-time:start -->", "<!-- wall-time:end -->"
STUDY_START, STUDY_END = "<!-- study:start -->", "<!-- study:end -->"


def stamp(ws) -> dict:
    return {"profile": ws.cfg.profile, "kit_version": __version__, "git_commit": KIT_COMMIT,
            "config_hash": report_hash(ws.cfg), "machine": machine(),
            "precision": getattr(ws, "compute_dtype", None) or compute_dtype_name(ws.cfg.runtime.device),
            "kernels": getattr(ws, "kernels", "native"),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def provenance(out_dir: str | Path) -> pd.DataFrame:
    """Per chapter: the kit commit it ran at, and the machines, precisions and commits of the
    stage folders it read (from their manifests)."""
    rows = []
    for chapter in sorted(read_chapter_times(out_dir)["chapters"]):
        record = read_chapter(out_dir, chapter) or {}
        manifests = [m for m in (read_manifest(Path(f)) for f in record.get("stages", {})) if m]
        join = lambda key: ", ".join(sorted({str(m[key]) for m in manifests if m.get(key)}))  # noqa: E731
        rows.append({"chapter": chapter, "kit commit": record.get("git_commit", ""),
                     "stage precisions": join("compute_dtype"), "stage commits": join("git_commit"),
                     "stage machines": join("machine")})
    return pd.DataFrame(rows)


def reach_line(reach: dict | None) -> str:
    """What the pseudo-positive threshold allows on these scores, and what no-denoise then tests."""
    if reach is None:
        return ""
    if reach["reachable"]:
        return (f"{reach['pseudo_positives']} scored pairs passed the pseudo-positive threshold "
                f"p = {reach['pos_threshold']}: the denoised lists hold pseudo-positives and denoised negatives.")
    where = ""
    if reach["logit_at_threshold"] is not None:
        where = (f" p = {reach['pos_threshold']} sits at CE logit {reach['logit_at_threshold']:.2f}, above the "
                 f"largest logit scored ({reach['max_logit']:.2f});")
    return (f"No scored pair can become a pseudo-positive: the highest calibrated probability of an unlabelled pair "
            f"is {reach['max_prob']:.3f}, below the threshold {reach['pos_threshold']};{where} so every denoised list "
            "keeps its labelled positive, and the 'w/o denoised lists' ablation tests the denoised negatives alone.")


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
    """Everything the report shows: rows, hybrid choices, the comparisons, the joint runs."""
    runs = results.planned_joint_runs(ws)
    hybrid, choices, fused = results.hybrid_rows(ws, runs)
    rows = (results.baseline_rows(ws) + results.warm_rerank_rows(ws) + results.joint_rows(ws, runs)
            + results.extra_rerank_rows(ws, runs) + hybrid)
    frame = pd.DataFrame(rows)
    systems_runs = results.test_runs(ws, runs, fused)
    measure = results.headline_measure(ws.cfg)
    test = results.dynamic_vs_static(ws, runs, frame, systems_runs, measure)
    claims = [results.compare(ws, frame, systems_runs, a, b, measure) for a, b, *_ in CLAIMS + RERANKED
              if results.seeds_of(frame, *a, measure) and results.seeds_of(frame, *b, measure)]
    rows += results.paired_rows(test) + results.stage_rows(ws, runs) + chapter_rows(out_dir)
    results.check_rows(rows)
    return {"rows": rows, "choices": choices, "paired": test, "claims": claims, "runs": runs,
            "reach": results.threshold_reach(ws), "val_queries": len(ws.val.queries)}


TIMINGS = ("wall_time_s", "overhead_s", "mean_step_s", "tokens_per_s")   # what the machine took, not the science


def write_results(out_dir: str | Path, rows: list[dict]) -> Path:
    """`results.json`: the science rows; `timings.json` beside it: what each stage and chapter took
    on the machine that ran it (rows with a metric in `TIMINGS`)."""
    results.check_rows(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "timings.json", [r for r in rows if r["metric"] in TIMINGS])
    write_json_atomic(out / "results.json", [r for r in rows if r["metric"] not in TIMINGS])
    return out / "results.json"


def update_run_rows(out_dir: str | Path, new_rows: list[dict]) -> Path | None:
    """Replace rows with the same (table, system, seed, metric) in the report's results and
    timings, append the rest."""
    out = Path(out_dir)
    if not (out / "results.json").exists():
        return None
    rows = [r for name in ("results.json", "timings.json") if (out / name).exists()
            for r in json.loads((out / name).read_text())]
    key = lambda r: (r["table"], r["system"], r["seed"], r["metric"])  # noqa: E731
    fresh = {key(r) for r in new_rows}
    return write_results(out_dir, [r for r in rows if key(r) not in fresh] + list(new_rows))


# ------------------------------------------------------------------------------ tables and figures
def write_tables(ws, frame: pd.DataFrame, data: dict, folder: Path) -> dict[str, Path]:
    from ..stages.ablations import ablation_list_size

    cfg, measures = ws.cfg, list(ws.cfg.evaluate.measures)
    measure = results.headline_measure(cfg)
    written = {
        "table2": tables.write_table(tables.table2(frame, measures), folder, "table2_retrieval",
                                     "Table 2 analogue: first-stage retrieval, test queries (mean ± sd over seeds)."),
        "table3": tables.write_table(tables.table3(frame, measures, cfg.evaluate.rerank_depth), folder, "table3_rerank",
                                     f"Table 3 analogue: re-ranking the top-{cfg.evaluate.rerank_depth}, test queries."),
        "table4": tables.write_table(tables.table4(frame, measures, ablation_list_size(cfg)), folder, "table4_ablation",
                                     "Table 4 analogue: the retriever under each ablation, test queries (mean ± sd)."),
        "list_size": tables.write_table(tables.list_size_table(frame, measure), folder, "list_size",
                                        f"Figure 4 analogue: instances per query vs test {measure} (dynamic)."),
        "paired": tables.write_table(tables.paired_table(data["paired"]), folder, "paired_test",
                                     f"Dynamic minus static distillation, test {measure}: run-level test over seeds "
                                     "(paired by seed), its 95 % interval and detectable difference; query-level "
                                     "paired t-test, Wilcoxon signed-rank test and bootstrap interval beside it."),
        "hybrid": tables.write_table(tables.hybrid_table(data["choices"], measures), folder, "hybrid",
                                     "Fusions with BM25: method and BM25 weight chosen on the validation runs, "
                                     "applied once to test."),
    }
    side = published.published_table(cfg.data.eval or cfg.data.train)
    if side is not None:
        written["published"] = tables.write_table(side, folder, "published", published.CAPTION, float_format="{:.3f}")
    quality = ws.folder("augment") / "denoising.json"
    if quality.exists():
        written["denoising"] = tables.write_table(denoising_table(json.loads(quality.read_text())), folder, "denoising",
                                                  "Denoising against the known unlabelled positives (rqakit/toy).")
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


def write_figures(ws, frame: pd.DataFrame, data: dict, folder: Path) -> dict[str, Path]:
    measure = results.headline_measure(ws.cfg)
    out = {"list_size": figures.save(figures.list_size_figure(tables.list_size_summary(frame, measure), measure),
                                     folder / "list_size.png")}
    first = results.first_dynamic(ws, data["runs"])
    static = [r for r in results.main_runs(ws, data["runs"], "static") if r.seed == first.seed]
    out["curves"] = figures.save(figures.curves_figure(_curves(first.folder), _curves(static[0].folder) if static else None),
                                 folder / "mutual_improvement.png")
    candidates = ws.folder("augment") / "candidates.parquet"
    if candidates.exists():
        a = ws.cfg.augment
        out["denoising"] = figures.save(figures.denoising_figure(pd.read_parquet(candidates), a.neg_threshold, a.pos_threshold),
                                        folder / "denoising.png")
    histories = {name: StageFolder(ws.folder(name)).history for name in ("warmup_de", "warmup_ce")}
    histories = {name: history for name, history in histories.items() if history is not None}
    if histories:
        out["warmup_loss"] = figures.save(figures.training_figure(histories), folder / "warmup_loss.png")
    return out


def _curves(folder: Path) -> list[dict]:
    return StageFolder(folder).curves or []


# ------------------------------------------------------------------------------ report.md
# The headline's comparisons, B against A: (A, B, label of A, label of B), each as (table, system).
CLAIMS = [
    (("retrieval", "bm25"), ("retrieval", "dynamic"), "BM25", "the dynamic retriever"),
    (("retrieval", "st-mnrl"), ("retrieval", "dynamic"), "the sentence-transformers MNRL peer", "the dynamic retriever"),
    (("retrieval", "fusion-zeroshot-tuned"), ("retrieval", "hybrid"), "BM25 + zero-shot backbone (tuned fusion)",
     "BM25 + dynamic retriever (the hybrid, tuned the same way)"),
    (("retrieval", "static"), ("retrieval", "dynamic"), "static distillation", "dynamic distillation"),
    (("rerank", "warmup_ce@bm25"), ("rerank", "joint_ce@bm25"), "the warm re-ranker on BM25's candidates",
     "the joint re-ranker"),
]
# Re-ranking against the retriever whose candidates it re-orders: a line in the headline where it lowers the score.
RERANKED = [
    (("retrieval", "dynamic"), ("rerank", "joint_ce@dynamic"), "the dynamic retriever", "its joint re-ranker"),
    (("retrieval", "static"), ("rerank", "warmup_ce@static"), "the static retriever", "the warm re-ranker"),
    (("retrieval", "static"), ("rerank", "joint_ce@static"), "the static retriever",
     "the joint re-ranker of the same seed"),
    (("retrieval", "dynamic"), ("rerank", "warmup_ce@dynamic"), "the dynamic retriever", "the warm re-ranker"),
    (("retrieval", "warmup_de"), ("rerank", "warmup_ce@warmup_de"), "the warm retriever", "the warm re-ranker"),
    (("retrieval", "bm25"), ("rerank", "warmup_ce@bm25"), "BM25", "the warm re-ranker"),
]


def _claim(c: dict, label_a: str, label_b: str, measure: str) -> str:
    from ..stats import sentence

    text = sentence(c, label_a, label_b).rstrip(".")
    if c.get("query_p") is not None:
        text += f"; query-level paired t p = {c['query_p']:.3g} over {c['n_queries']} test queries"
    return f"- On test {measure}, {text}."


def headline(claims: list[dict], measure: str = "nDCG@10", depth: int | None = None) -> list[str]:
    """The report's first lines, each worded by its test (`rqakit.stats.sentence`): "beats" only
    where the run-level test over seeds is significant at 0.05, "is level with" otherwise, and a
    one-run comparison says so. Then every re-ranking that lowers the score of the retriever whose
    candidates it re-orders."""
    found = {(c["a"], c["b"]): c for c in claims}
    lines = []
    for a, b, label_a, label_b in CLAIMS:
        c = found.get((a[1], b[1]))
        if c is None:
            lines.append(f"- {label_a} was not run for this profile: no comparison with {label_b}.")
            continue
        lines.append(_claim(c, label_a, label_b, measure))
    top = f"top {depth}" if depth else "top candidates"
    for a, b, label_a, label_b in RERANKED:
        c = found.get((a[1], b[1]))
        if c is not None and c["diff"] < 0:
            lines.append(f"- Re-ranking lowers the score: {label_b} on {label_a}'s {top} gives {c['mean_b']:.3f} "
                         f"against the retriever's {c['mean_a']:.3f} "
                         f"({c['diff']:+.3f}, {'p = ' + format(c['p'], '.3g') if c['p'] is not None else 'one run'}).")
    return lines


def scope(cfg) -> str:
    """What a profile with a real backbone shows and does not show, from its own settings."""
    j = cfg.joint
    return (f"> This profile trains `{cfg.model.backbone}` on `{cfg.data.train}` with lists of m = {j.list_size} "
            f"and {j.epochs:g} epoch{'s' if j.epochs != 1 else ''} of joint training. It tests the paper's claims "
            "(dynamic over static distillation, the ablations, list size, both models improving together) at "
            "this scale and on this collection. It does not reproduce the paper's figures, which come from "
            "ERNIE-base on MS MARCO and NQ with lists of 128 and 32 on up to 32 GPUs: those stay in their own tables "
            "below.")


def wall_time_section(ws, out_dir: str | Path, runs: list) -> str:
    """Wall time per chapter (chapters.json) and per stage (manifests), mean step time of training."""
    times = read_chapter_times(out_dir)
    lines = [WALL_START, "## Wall time", ""]
    if times["chapters"]:
        built = chapter_stage_seconds(out_dir, sorted(times["chapters"]))
        frame = pd.DataFrame([{"chapter": name, "wall time (s)": _num(r.get("wall_time_s")),
                               "attempts": r.get("attempts", 1),
                               "build time of its stages (s)": _num(built[name]),
                               "kit commit": chapter_commit(out_dir, name)} for name, r in times["chapters"].items()])
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
        manifest = StageFolder(folder).manifest
        step = results.mean_step_s(folder) if manifest.get("steps") else None
        stage.append({"stage": manifest.get("stage") or (system if seed is None else f"{system}-s{seed}"),
                      "folder": folder.name, "wall time (s)": _num(manifest.get("wall_time_s")),
                      "attempts": manifest.get("attempts", 1), "CPU share": _num(manifest.get("cpu_share"), 2),
                      "precision": manifest.get("compute_dtype", ""),
                      "mean step (s)": _num(step, 3),
                      "kit commit": ", ".join(manifest.get("git_commits") or [manifest.get("git_commit", "")])})
    if stage:
        lines += ["Stages (from their manifests; a stage reused from the cache keeps the time of the run that "
                  "built it, summed over its attempts when it was killed and resumed; CPU share is the CPU time it "
                  "got over its threads x its wall time, where recorded: below 1, other jobs shared the CPU and "
                  "the stage reads slow; precision: the dtype it computed in; kit commit: the code each recorded "
                  "attempt ran):", "",
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


def study_section(study_folder: str | Path) -> list[str]:
    """The Table 4 section's paragraph on the distillation study, between markers so that
    `refresh_study_summary` can replace it; empty where the study has no power comparison."""
    summary = study_summary(study_folder)
    return [STUDY_START, summary, STUDY_END, ""] if summary else []


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
    prov = provenance(out_dir)
    parts += ["| stamp | |", "|---|---|", *[f"| {k} | {v} |" for k, v in stamp_.items()], ""]
    if not prov.empty:
        parts += ["Provenance: the kit commit each chapter ran at, and the precision, commit and machine of the "
                  "stage folders it read (a chapter rerun over cached stages keeps their provenance).", "",
                  tables.markdown_table(prov), ""]
    parts += [
              f"Data: train `{cfg.data.train}`, test `{cfg.data.eval or 'held out of train'}`; backbone "
              f"`{cfg.model.backbone}`; list size m = {cfg.joint.list_size} (Table 4: m = {table4_m}); "
              f"seeds {list(cfg.ablations.seeds)} "
              f"(other variants {list(cfg.ablations.variant_seeds)}); list sizes of the list-size study "
              f"{list(cfg.ablations.list_sizes)}. Every number is in `results.json`.", "",
              *[f"- Profile note, {key}: {value}" for key, value in (cfg.notes or {}).items()], "",
              "## Retrieval (Table 2 analogue)", "", md("table2"), "",
              "The hybrid rows fuse BM25 with the dynamic (hybrid) or the static (hybrid-static) retriever, and "
              "fusion-zeroshot-tuned with the zero-shot backbone; each fusion's method (RRF or min-max) and BM25 "
              "weight are chosen on the validation runs only, so the trained and the untrained fusions get the same "
              "search. fusion-zeroshot is plain RRF (k = 60): nothing trained, nothing chosen.", "", md("hybrid"), "",
              "## Re-ranking (Table 3 analogue)", "", md("table3"), "",
              f"Re-ranked on test, the top {cfg.evaluate.rerank_depth} of each retriever: BM25's, the warm "
              "retriever's and every static and dynamic retriever's by the warm re-ranker; each dynamic run's own "
              "candidates and BM25's by that run's joint re-ranker; each static run's by the joint re-ranker of the "
              "dynamic run with the same seed. A re-ranked list holds only the candidates it re-orders, so its recall "
              f"is R@{cfg.evaluate.rerank_depth}, below a retriever's R@{cfg.evaluate.retrieve_depth}. The pointwise "
              "and no-denoise runs enter Table 4 through their retrievers only.", "",
              *([f"Teacher check, before the warm re-ranker's scores were used (`rqakit.stages.teacher`): "
                 f"{checked['line']}.", ""] if (checked := teacher.read(ws)) else []),
              "## Ablations (Table 4 analogue)", "", md("table4"), "", md("paired"), "",
              *study_section(out_dir.parent / f"{cfg.profile}-study"),
              "The run-level test decides the claim: each run is one number, dynamic and static runs pair by seed "
              "(same data order and initial random state), and the detectable difference is the smallest true "
              "difference that test finds at 80 % power with these seeds. The query-level tests average each "
              "variant's seeds per query first: they hold the test queries' noise but not the runs', so they are "
              "narrower and are shown beside it, not instead of it.", "",
              *([reach_line(data["reach"]), ""] if data.get("reach") else []),
              "## List size (Figure 4 analogue)", "", md("list_size"), "", f"![list size]({rel(figs['list_size'])})", "",
              "## Mutual improvement", "",
              "Both models of the first dynamic seed on the validation slice during joint training, beside the static "
              "run of the same seed (the paper has no such figure; it argues mutual improvement through Tables 3-4). "
              f"Only these two runs draw curves, every {cfg.joint.eval_every} steps, one seed each: each model ranks "
              f"a fixed pool of at most 20 candidates (BM25's and the warm retriever's top 10) for each of the "
              f"{data['val_queries']} validation queries, so the curves show the direction of training, not "
              "retrieval over the corpus.", "",
              f"![mutual improvement]({rel(figs['curves'])})", ""]
    if "denoising" in figs:
        parts += ["## Denoising", "", f"![denoising]({rel(figs['denoising'])})", ""]
        if "denoising" in written:
            parts += [md("denoising"), ""]
    if "warmup_loss" in figs:
        parts += ["## Warm-up training loss", "", f"![warm-up loss]({rel(figs['warmup_loss'])})", ""]
    if "published" in written:
        parts += ["## What else a user might pick (published numbers, side table)", "", md("published"), ""]
    parts += ["## The paper's own numbers (side tables)", "",
              "MS MARCO and NQ with ERNIE-base on up to 32 GPUs: other collections and models than this profile's, "
              "so they are shown apart and never compared cell by cell. R@k in the paper is a hit rate.", ""]
    for name in ("table2", "table3", "table4", "figure4"):
        parts += [md(f"paper_{name}"), ""]
    if (out_dir / "reproductions.md").exists():
        parts += ["## Reproduction log", "",
                  "Every run that reproduced this report, with its machine, precision and how far it landed from these "
                  "results, earlier passes included: [reproductions.md](reproductions.md) (`rqakit reproduce --record`).",
                  ""]
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
    head = headline(data["claims"], results.headline_measure(ws.cfg), depth=ws.cfg.evaluate.rerank_depth)
    report.write_text(render_report(ws, out_dir, head, data, written, figs, stamp_))
    return {"results": str(results_path), "report": str(report), "tables": {k: str(v) for k, v in written.items()},
            "figures": {k: str(v) for k, v in figs.items()}, "headline": head,
            "paired_test": data["paired"], "hybrid": data["choices"], "stamp": stamp_}


def refresh_study_summary(out_dir: str | Path, study_folder: str | Path) -> bool:
    """Re-render the study's paragraph in report.md from the study's results.json alone (no stage
    folders needed); False where report.md has no such paragraph to replace."""
    report = Path(out_dir) / "report.md"
    section = study_section(study_folder)
    text = report.read_text() if report.exists() else ""
    start, end = text.find(STUDY_START), text.find(STUDY_END)
    if not section or start < 0 or end < start:
        return False
    text = text[:start] + "\n".join(section[:-1]) + text[end + len(STUDY_END):]
    report.write_text(text)
    return True


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

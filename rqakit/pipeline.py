"""`rqakit reproduce`: run a profile's notebooks in order with papermill, then stamp the report.

    reproduce("toy")                                  # reports/toy/: notebooks/, *.json, tables/, figures/, report.md
    reproduce("toy", overrides=["joint.lr=2e-5"])     # the CLI's --set list (or a dict)

Each chapter is `notebooks/NN_name.ipynb`, executed into `<out>/notebooks/NN_name.ipynb` with the
parameters profile, overrides, out_dir and force. Its last cell writes `<out>/NN_name.json`
stamped with the config hash of the resolved config, the kit version and the stage folders it read;
a chapter whose record matches and whose stage folders are all complete is skipped (unless force),
and a chapter after one that ran runs too. A run that skips every chapter writes nothing. A
failing chapter stops the run with one RqaError line naming the chapter, the cell and the error;
the stages are cached on disk, so rerunning resumes there.

Per chapter, `<out>/chapters.json` keeps the wall time summed over its attempts (a chapter killed
and resumed counts both, rqakit.attempts), the overhead (kernel start, notebook I/O and the cell
tagged `imports`) and the kit's commit in the chapter's own record; the sum over chapters is
results.json's `reproduce` row.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from .artifacts import unwritable_reason
from .attempts import Attempts
from .config import load_config, parse_overrides, report_hash
from .env import environment, kernel_variables
from .errors import Interrupted, RqaError
from .progress import ENV as PROGRESS_ENV
from .progress import Echo, clock
from .report.chapter import committed_report, default_out, is_current, read_chapter_times, stale_reason, write_chapter_times

CHAPTERS = ("01_data", "02_baselines", "03_warmup", "04_augment", "05_joint", "06_ablations", "07_report")
KERNEL = "python3"           # ipykernel's kernel; jupyter_client runs it with this interpreter
START_TIMEOUT_S = 300        # kernel start on a busy machine
ATTEMPTS_DIR = ".attempts"   # in the report folder: each running chapter's time so far (rqakit.attempts)


def notebooks_dir() -> Path:
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    if not (folder / f"{CHAPTERS[0]}.ipynb").exists():
        raise RqaError(f"no notebooks in {folder}; `rqakit reproduce` runs from a source checkout of the kit")
    return folder


def select_chapters(names) -> list[str]:
    """Chapters by full name ("03_warmup"), number ("03", "3") or name ("warmup"), in pipeline order."""
    if not names:
        return list(CHAPTERS)
    chosen = set()
    for name in names:
        hits = [c for c in CHAPTERS if name in (c, c[:2], c[3:]) or (name.isdigit() and int(name) == int(c[:2]))]
        if not hits:
            raise RqaError(f"unknown chapter {name!r}; choose from: {', '.join(CHAPTERS)}")
        chosen.update(hits)
    return [c for c in CHAPTERS if c in chosen]


@contextlib.contextmanager
def kernel_environment(kernels: str = "native"):
    """The kernel inherits this process's environment: the kit's root on PYTHONPATH (a source
    checkout that is not pip-installed still imports), progress bars redrawn at most once a minute
    so that the executed copies stay readable, and `runtime.kernels`' variables (`rqakit.env`)."""
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    with environment(PYTHONPATH=os.pathsep.join([root, *[p for p in paths if p != root]]),
                     TQDM_MININTERVAL=os.environ.get("TQDM_MININTERVAL", "60"), **kernel_variables(kernels)):
        yield


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(chapter: str, error: Exception, executed: Path) -> str:
    """One line: the chapter, the failing cell (index and first source line) and the error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        first = next((line.strip() for line in (error.source or "").splitlines() if line.strip()), "")
        where = f"cell {error.cell_index} (`{_one_line(first, 80)}`)"
        what = f"{error.ename}: {_one_line(error.evalue)}"
    else:
        where, what = "kernel", f"{type(error).__name__}: {_one_line(error)}"
    return (f"chapter {chapter} failed at {where}: {what} [executed copy: {executed}; "
            f"fix and rerun, finished chapters and stages are cached]")


def chapter_timing(nb, wall_time_s: float) -> dict:
    """Wall time and overhead of one executed notebook from papermill's per-cell durations.

    overhead = kernel start + notebook I/O (wall time not spent in cells) + the `imports` cell.
    """
    durations = [float(c.metadata.get("papermill", {}).get("duration") or 0.0) for c in nb.cells if c.cell_type == "code"]
    imports = sum(float(c.metadata.get("papermill", {}).get("duration") or 0.0) for c in nb.cells
                  if "imports" in c.metadata.get("tags", []))
    cells = sum(durations)
    kernel = max(0.0, wall_time_s - cells)
    return {"wall_time_s": round(wall_time_s, 3), "overhead_s": round(kernel + imports, 3), "kernel_s": round(kernel, 3),
            "imports_s": round(imports, 3), "cells_s": round(cells, 3)}


def run_chapter(chapter: str, parameters: dict, out: Path, kernels: str = "native") -> dict:
    """Execute one notebook with papermill; RqaError (one line) when a cell fails."""
    import papermill

    source = notebooks_dir() / f"{chapter}.ipynb"
    executed = out / "notebooks" / f"{chapter}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        with kernel_environment(kernels):
            nb = papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name=KERNEL,
                                            progress_bar=False, log_output=False, cwd=os.getcwd(),
                                            start_timeout=START_TIMEOUT_S)
    except Exception as error:  # papermill's execution error, a dead kernel, a missing kernel
        raise RqaError(failure_message(chapter, error, executed)) from None
    return {**chapter_timing(nb, time.time() - start), "status": "ran", "executed": str(executed.relative_to(out)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def reproduce(profile: str, out: str | Path | None = None, force: bool = False, overrides=None,
              chapters=None, log=None, strict: bool = False, record: str | None = None) -> dict:
    """Run the profile's chapters in order (cached ones skipped); then, when the profile has a
    committed report and this run wrote elsewhere, compare the two (`rqakit.check`): `strict`
    makes a difference beyond the tolerance an error, `record` (a note, "" for none) appends the
    comparison to the committed report's reproduction log. Returns a summary for the CLI."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    overrides = parse_overrides(overrides)
    cfg = load_config(profile, overrides)                       # bad keys and values fail here, before any kernel
    check_collection(cfg)                                       # and so does a bad line in the profile's own files
    profile, overrides = kernel_parameters(profile, overrides, cfg)
    cfg_hash = report_hash(cfg)
    out = Path(out or default_out(cfg)).resolve()
    for folder, what, fix in ((out, "report folder", "choose another with --out DIR"),
                              (Path(cfg.runtime.workdir), "runtime.workdir", "choose another with --set runtime.workdir=DIR")):
        reason = unwritable_reason(folder)
        if reason:
            raise RqaError(f"{what} {folder}: {reason}; {fix}")
    out.mkdir(parents=True, exist_ok=True)
    parameters = {"profile": profile, "overrides": overrides, "out_dir": str(out), "force": bool(force)}
    times = read_chapter_times(out)
    times.update({"profile": cfg.profile, "config_hash": cfg_hash})
    start, status, selected = time.time(), {}, select_chapters(chapters)
    handle, progress_file = tempfile.mkstemp(prefix="rqakit-progress-", suffix=".jsonl")
    os.close(handle)
    try:
        with progress_environment(progress_file), Echo(Path(progress_file), log) as echo:
            kernels = {} if cfg.runtime.kernels == "native" else {"kernels": cfg.runtime.kernels}
            _run_chapters(selected, out, cfg_hash, force, parameters, times, status, echo, log, kernels)
    finally:
        os.unlink(progress_file)
    if "ran" in status.values():  # a run that found everything cached leaves every file as it was
        _stamp_report(cfg, out, cfg_hash)
    summary = {"profile": cfg.profile, "config_hash": cfg_hash, "out": str(out), "chapters": status,
               "wall_time_s": round(time.time() - start, 2),
               "reproduce_wall_time_s": times.get("reproduce_wall_time_s"),
               "report": str(out / "report.md") if (out / "report.md").exists() else None}
    committed = committed_report(cfg.profile)
    if out != committed.resolve() and (committed / "results.json").exists() and "07_report" in selected:
        summary["check"] = _check(cfg, committed, out, strict, record, log)
    return summary


def kernel_parameters(profile: str, overrides: dict, cfg) -> tuple[str, dict]:
    """The profile and overrides as a notebook kernel gets them: it works from the repository root,
    so a profile file is named by its absolute path, and so are the files of data.files."""
    import dataclasses

    if Path(profile).suffix:
        profile = str(Path(profile).resolve())
    if any(key.startswith("data.files") for key in overrides):
        overrides = {**{k: v for k, v in overrides.items() if not k.startswith("data.files")},
                     "data.files": dataclasses.asdict(cfg.data.files)}
    return profile, overrides


def check_collection(cfg) -> None:
    """The profile's own files (data.files) checked in full and registered, before any kernel starts."""
    from .data.files import register_declared

    for dataset_id in (cfg.data.train, cfg.data.eval):
        if dataset_id:
            register_declared(dataset_id)


def _check(cfg, committed: Path, out: Path, strict: bool, note: str | None, log) -> dict:
    from . import check
    from .artifacts import KIT_COMMIT, machine

    if not (out / "results.json").exists() and not strict:
        log(f"check: no results at {out / 'results.json'} to compare with {committed / 'results.json'}")
        return {"compared": 0, "within": None}
    result = check.check(committed, out, cfg.profile)
    log(check.check_table(result))
    if note is not None:
        check.record(committed, check.log_entry(result, machine=machine(), commit=KIT_COMMIT, label=note))
    if strict and not result["within"]:
        raise RqaError(f"the reproduction of {cfg.profile} differs from {committed / 'results.json'} beyond the "
                       f"tolerance ({result['max_abs_diff']:.4g} > {result['tolerance']}); the rows are listed above")
    return {k: result[k] for k in ("compared", "exact", "max_abs_diff", "tolerance", "within", "missing", "extra")}


@contextlib.contextmanager
def progress_environment(path: str):
    """The kernels inherit `$RQAKIT_PROGRESS`: their stages and loops report there (rqakit.progress)."""
    with environment(**{PROGRESS_ENV: path}):
        yield


def time_left(times: dict, chapters: list[str]) -> float | None:
    """The last recorded wall times of `chapters` summed: the run's time left, when all are known."""
    walls = [times["chapters"].get(c, {}).get("wall_time_s") for c in chapters]
    return float(sum(walls)) if walls and all(w is not None for w in walls) else None


def _run_chapters(selected, out, cfg_hash, force, parameters, times, status, echo, log, kernels: dict) -> None:
    for index, chapter in enumerate(selected):
        # A chapter after one that ran reads what that one rebuilt, so it runs too.
        stale = "forced" if force else ("an earlier chapter ran" if "ran" in status.values()
                                        else stale_reason(out, chapter, cfg_hash))
        if stale is None:
            status[chapter] = "cached"
            log(f"[reproduce] {chapter}: cached ({cfg_hash})")
            continue
        left = time_left(times, selected[index:])
        estimate = f"; about {clock(left)} left for the run (last recorded chapter times)" if left else ""
        log(f"[reproduce] {chapter}: running ({stale}); chapter {index + 1} of {len(selected)}{estimate}")
        echo.chapter, echo.stage, echo.last_bar = chapter, None, None
        attempts = out / ATTEMPTS_DIR / f"{chapter}.json"   # a killed run's time counts when it resumes
        if force:
            attempts.unlink(missing_ok=True)
        spent_on = Attempts(attempts)
        try:
            try:
                with spent_on.running():
                    record = run_chapter(chapter, parameters, out, **kernels)
            except KeyboardInterrupt:
                echo.drain()
                raise Interrupted(f"interrupted in chapter {chapter}{echo.where()}; run the same command again to "
                                  "resume: finished chapters and stages are cached and training restarts from its "
                                  "last checkpoint") from None
            echo.drain()
            if not is_current(out, chapter, cfg_hash):
                raise RqaError(f"chapter {chapter} ran but {out / (chapter + '.json')} is not stamped with config "
                               f"{cfg_hash}: the profile or the kit changed during the run, or the notebook's last "
                               "cell did not call write_chapter; rerun")
        except RqaError as error:
            state = "interrupted" if isinstance(error, Interrupted) else "failed"
            times["chapters"][chapter] = {**times["chapters"].get(chapter, {}), "status": state, "error": str(error)}
            _write_times(out, times)
            raise
        spent = spent_on.totals(elapsed_s=record["wall_time_s"])   # this attempt as run_chapter timed it
        times["chapters"][chapter] = {**record, "wall_time_s": spent["wall_time_s"], "attempts": spent["attempts"]}
        spent_on.clear()
        _write_times(out, times)
        status[chapter] = "ran"
        log(f"[reproduce] {chapter}: done in {times['chapters'][chapter]['wall_time_s']:.1f} s")


def _write_times(out: Path, times: dict) -> None:
    """chapters.json with the whole reproduction's wall time: the sum of every chapter's last
    successful run; None while a chapter has never run or has just failed."""
    records = [times["chapters"].get(c, {}) for c in CHAPTERS]
    complete = all(r.get("wall_time_s") is not None and r.get("status") != "failed" for r in records)
    times["reproduce_wall_time_s"] = round(sum(r["wall_time_s"] for r in records), 3) if complete else None
    write_chapter_times(out, times)


def _stamp_report(cfg, out: Path, cfg_hash: str) -> None:
    """Chapter and reproduction rows into results.json, wall times into report.md (when current)."""
    if not is_current(out, "07_report", cfg_hash):
        return
    from .report import refresh_wall_times
    from .stages import Workspace

    refresh_wall_times(Workspace(cfg, kernels=cfg.runtime.kernels), out)   # the chapters' folders


def build_study(profile: str, *, out=None, overrides=None) -> dict:
    """Execute `notebooks/study.ipynb` with papermill into the study folder: report.md,
    results.json, tables/, figures/ from the exported run files alone."""
    from .study import read_runs, study_dir

    out = study_dir(profile, out)
    if not read_runs(out):
        raise RqaError(f"no exported runs in {Path(out).resolve() / 'runs'}; run `rqakit study --profile {profile}` "
                       "to train them first")
    timing = run_chapter("study", {"profile": profile, "out_dir": str(out)}, out)
    from .report import refresh_study_summary

    main = Path(out).parent / profile   # the profile's report, whose Table 4 section quotes the study
    return {"report": str(out / "report.md"), "wall_time_s": timing["wall_time_s"],
            "main_report_refreshed": refresh_study_summary(main, out)}

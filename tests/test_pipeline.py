"""`rqakit reproduce`: the toy profile end to end through papermill, cached chapters skipped on a
rerun, a failing chapter reported on one line; and the notebooks as committed."""
import json
import math
import time

import nbformat
import pandas as pd
import pytest
from papermill.exceptions import PapermillExecutionError

from rqakit import __version__, pipeline
from rqakit.cli import main
from rqakit.config import load_config, report_hash
from rqakit.errors import RqaError
from rqakit.pipeline import CHAPTERS, failure_message, notebooks_dir, parse_overrides, reproduce, select_chapters
from rqakit.report.chapter import is_current, write_chapter
from rqakit.stages import Workspace

TABLES = ("table2_retrieval", "table3_rerank", "table4_ablation", "list_size", "paired_test", "hybrid",
          "paper_table2", "paper_table3", "paper_table4", "paper_figure4")
FIGURES = ("list_size", "mutual_improvement", "denoising", "warmup_loss")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebooks_are_committed_thin_and_clean(chapter):
    nb = nbformat.read(notebooks_dir() / f"{chapter}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert [line.split("=")[0].strip() for line in tagged[0].source.splitlines()] == ["profile", "overrides", "out_dir", "force"]
    assert sum("imports" in c.metadata.get("tags", []) for c in code) == 1
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert f'write_chapter(out_dir, "{chapter}"' in code[-1].source
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 3


def test_overrides_and_chapter_names():
    assert parse_overrides(["joint.lr=2e-5", "data.eval=a=b"]) == {"joint.lr": "2e-5", "data.eval": "a=b"}
    assert parse_overrides({"joint.lr": 2e-5}) == {"joint.lr": 2e-5}
    with pytest.raises(RqaError, match="not key=value"):
        parse_overrides(["joint.lr"])
    assert select_chapters(["report", "3", "01_data"]) == ["01_data", "03_warmup", "07_report"]
    assert select_chapters(None) == list(CHAPTERS)
    with pytest.raises(RqaError, match="unknown chapter"):
        select_chapters(["08"])


def test_chapter_record_is_current_only_for_its_config_and_version(tmp_path):
    cfg = load_config("toy")
    write_chapter(tmp_path, "02_baselines", Workspace(cfg), {"bm25": {"nDCG@10": float("nan")}})
    record = json.loads((tmp_path / "02_baselines.json").read_text())
    assert record["results"] == {"bm25": {"nDCG@10": None}} and record["kit_version"] == __version__
    assert is_current(tmp_path, "02_baselines", report_hash(cfg))
    assert not is_current(tmp_path, "02_baselines", report_hash(load_config("toy", {"joint.lr": 3e-4})))
    # what only changes how fast stages run, as for their folders, leaves the record current
    for neutral in ({"runtime.threads": 1}, {"runtime.dropout_masks": "torch"}, {"joint.checkpoint_every": 7},
                    {"evaluate.batch_size": 3}):
        assert is_current(tmp_path, "02_baselines", report_hash(load_config("toy", neutral)))
    assert not is_current(tmp_path, "03_warmup", report_hash(cfg))
    (tmp_path / "02_baselines.json").write_text(json.dumps({**record, "kit_version": "0.0.0"}))
    assert not is_current(tmp_path, "02_baselines", report_hash(cfg))


def test_failure_message_is_one_line_naming_chapter_cell_and_error(tmp_path):
    error = PapermillExecutionError(cell_index=6, exec_count=4, source="\naug = augment.run(ws, force=force)\nx = 1",
                                    ename="RqaError", evalue="list_size 9 must be between 2\nand 4", traceback=[])
    message = failure_message("04_augment", error, tmp_path / "04_augment.ipynb")
    assert "\n" not in message
    assert message.startswith("chapter 04_augment failed at cell 6 (`aug = augment.run(ws, force=force)`): "
                              "RqaError: list_size 9 must be between 2 and 4")


def test_unknown_override_fails_before_any_kernel(tmp_path, capsys):
    assert main(["reproduce", "--profile", "toy", "--out", str(tmp_path), "--set", "joint.nope=1"]) == 2
    assert "unknown config key 'joint.nope'" in capsys.readouterr().err
    assert not (tmp_path / "notebooks").exists()


def fake_chapters(monkeypatch, stamp_overrides=None) -> list:
    """Replace the papermill run of a chapter by writing its record (stamped with the run's config,
    or with `stamp_overrides` applied) and 2 s of wall time; returns the chapters run, in order."""
    ran = []

    def run_chapter(chapter, parameters, out, kernels="native"):
        ran.append(chapter)
        overrides = {**parameters["overrides"], **(stamp_overrides or {})}
        write_chapter(out, chapter, Workspace(load_config(parameters["profile"], overrides)), {})
        return {"wall_time_s": 2.0, "overhead_s": 1.0, "status": "ran"}

    monkeypatch.setattr(pipeline, "run_chapter", run_chapter)
    return ran


def test_cached_chapters_are_skipped_until_config_or_force_changes(tmp_path, monkeypatch):
    ran = fake_chapters(monkeypatch)
    first = reproduce("toy", out=tmp_path, log=lambda m: None)
    assert ran == list(CHAPTERS) and first["chapters"] == {c: "ran" for c in CHAPTERS}
    assert json.loads((tmp_path / "chapters.json").read_text())["reproduce_wall_time_s"] == 2.0 * len(CHAPTERS)
    again = reproduce("toy", out=tmp_path, log=lambda m: None)
    assert ran == list(CHAPTERS) and set(again["chapters"].values()) == {"cached"}
    reproduce("toy", out=tmp_path, chapters=["5"], force=True, log=lambda m: None)
    assert ran[len(CHAPTERS):] == ["05_joint"]
    reproduce("toy", out=tmp_path, overrides=["joint.lr=3e-4"], log=lambda m: None)
    assert ran[len(CHAPTERS) + 1:] == list(CHAPTERS)


def test_a_chapter_stamped_with_another_config_stops_the_run(tmp_path, monkeypatch):
    ran = fake_chapters(monkeypatch, stamp_overrides={"joint.lr": 0.5})
    with pytest.raises(RqaError, match="01_data ran but .* is not stamped with config"):
        reproduce("toy", out=tmp_path, log=lambda m: None)
    assert ran == ["01_data"]
    record = json.loads((tmp_path / "chapters.json").read_text())
    assert record["chapters"]["01_data"]["status"] == "failed" and record["reproduce_wall_time_s"] is None


def fake_stage_chapters(monkeypatch, workdir) -> list:
    """Like `fake_chapters`, but each chapter after 01_data reads one stage folder of its own,
    built through the chapter's Workspace under `workdir`, as the notebooks do."""
    ran = []

    def run_chapter(chapter, parameters, out, kernels="native"):
        ran.append(chapter)
        ws = Workspace(load_config(parameters["profile"], parameters["overrides"]))
        if chapter != "01_data":
            ws.build(workdir / chapter, "h-" + chapter, lambda tmp: {}, log=lambda m: None)
        write_chapter(out, chapter, ws, {})
        return {"wall_time_s": 2.0, "overhead_s": 1.0, "status": "ran"}

    monkeypatch.setattr(pipeline, "run_chapter", run_chapter)
    return ran


def test_a_chapter_whose_stage_folder_is_gone_runs_again_and_so_do_later_ones(tmp_path, monkeypatch):
    import shutil

    ran = fake_stage_chapters(monkeypatch, tmp_path / "runs")
    reproduce("toy", out=tmp_path / "out", log=lambda m: None)
    assert ran == list(CHAPTERS)
    assert json.loads((tmp_path / "out" / "03_warmup.json").read_text())["stages"] == {
        str(tmp_path / "runs" / "03_warmup"): "h-03_warmup"}
    shutil.rmtree(tmp_path / "runs" / "04_augment")
    logs = []
    summary = reproduce("toy", out=tmp_path / "out", log=logs.append)
    assert ran[len(CHAPTERS):] == ["04_augment", "05_joint", "06_ablations", "07_report"]
    assert summary["chapters"]["03_warmup"] == "cached"
    assert any("04_augment: running (stage folder" in line and "04_augment is missing" in line for line in logs)


def test_a_fresh_clone_reproduces_beside_its_cache_and_leaves_the_committed_report_alone(tmp_path, monkeypatch):
    """A profile with a committed report is reproduced into <workdir>/<profile>/report and checked
    against it: the committed files keep every byte (a fresh clone's run leaves git status clean),
    and a rerun over a complete run writes nothing."""
    from pathlib import Path

    committed = Path(pipeline.__file__).resolve().parents[1] / "reports" / "toy"
    before = {p: p.read_bytes() for p in committed.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    stamped = []
    monkeypatch.setattr(pipeline, "_stamp_report", lambda cfg, out, h: stamped.append(out))
    ran = fake_stage_chapters(monkeypatch, tmp_path / "runs" / "toy")
    first = reproduce("toy", log=lambda m: None)
    out = tmp_path / "runs" / "toy" / "report"
    assert Path(first["out"]) == out.resolve() and ran == list(CHAPTERS) and len(stamped) == 1
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    again = reproduce("toy", log=lambda m: None)
    assert set(again["chapters"].values()) == {"cached"} and ran == list(CHAPTERS) and len(stamped) == 1
    assert files == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert before == {p: p.read_bytes() for p in committed.rglob("*") if p.is_file()}


def test_the_terminal_shows_chapter_stage_and_each_loop_with_total_and_time_left(tmp_path, monkeypatch):
    """The kernel's stages and loops report through $RQAKIT_PROGRESS; reproduce prints them."""
    from rqakit import progress
    from rqakit.artifacts import run_stage

    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    monkeypatch.setenv("RQAKIT_PROGRESS_EVERY", "0")

    def run_chapter(chapter, parameters, out, kernels="native"):
        def build(tmp):
            for _ in progress.Bar(range(12), desc="warmup_de", disable=False):
                time.sleep(0.01)
            return {}

        run_stage(tmp_path / "runs" / "warmup_de" / "h", "h", build, log=lambda m: None)
        write_chapter(out, chapter, Workspace(load_config(parameters["profile"], parameters["overrides"])), {})
        return {"wall_time_s": 2.0, "overhead_s": 1.0, "status": "ran"}

    monkeypatch.setattr(pipeline, "run_chapter", run_chapter)
    logs = []
    reproduce("toy", out=tmp_path / "out", chapters=["3", "4"], log=logs.append)
    assert "[reproduce] 03_warmup · stage warmup_de: running" in logs
    assert any(line.startswith("[reproduce] 03_warmup · warmup_de: 6/12 [50%]") and "left" in line for line in logs)
    assert any(line.startswith("[reproduce] 03_warmup · warmup_de: 12/12 [100%]") for line in logs)
    assert any(line.startswith("[reproduce] 03_warmup · stage warmup_de: done in") for line in logs)
    assert any("03_warmup: running (no record); chapter 1 of 2" in line for line in logs)
    # with chapter times on record, the run says how long it has left
    logs.clear()
    reproduce("toy", out=tmp_path / "out", chapters=["3", "4"], force=True, log=logs.append)
    assert any("03_warmup: running (forced); chapter 1 of 2; about 0:04 left for the run" in line for line in logs)


def test_ctrl_c_names_the_chapter_and_stage_where_the_run_stopped(tmp_path, monkeypatch, capsys):
    from rqakit import progress

    def run_chapter(chapter, parameters, out, kernels="native"):
        if chapter == "05_joint":
            progress.emit("stage", name="joint-dynamic-m4-s1", state="running")
            progress.emit("bar", desc="joint-dynamic-m4-s1", n=7, total=21, start=0, elapsed=3.0)
            raise KeyboardInterrupt
        write_chapter(out, chapter, Workspace(load_config(parameters["profile"], parameters["overrides"])), {})
        return {"wall_time_s": 2.0, "overhead_s": 1.0, "status": "ran"}

    monkeypatch.setattr(pipeline, "run_chapter", run_chapter)
    code = main(["reproduce", "--profile", "toy", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert err[-1] == ("rqakit: interrupted in chapter 05_joint at stage joint-dynamic-m4-s1 (joint-dynamic-m4-s1 "
                       "7/21); run the same command again to resume: finished chapters and stages are cached and "
                       "training restarts from its last checkpoint")
    assert json.loads((tmp_path / "chapters.json").read_text())["chapters"]["05_joint"]["status"] == "interrupted"


def assert_complete_report(out, summary) -> None:
    """Every chapter ran without an error and is stamped with the run's config; every table,
    figure and results row is there."""
    assert summary["chapters"] == {c: "ran" for c in CHAPTERS}
    for chapter in CHAPTERS:
        executed = nbformat.read(out / "notebooks" / f"{chapter}.ipynb", as_version=4)
        assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert json.loads((out / f"{chapter}.json").read_text())["config_hash"] == summary["config_hash"]
    for name in TABLES:
        assert (out / "tables" / f"{name}.csv").exists() and (out / "tables" / f"{name}.md").exists(), name
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    rows = json.loads((out / "results.json").read_text())
    assert all(math.isfinite(r["value"]) for r in rows)
    assert set(pd.DataFrame(rows)["table"]) == {"retrieval", "rerank", "ablation", "listsize", "paired", "run"}


@pytest.mark.slow
def test_toy_profile_end_to_end(tmp_path, capsys):
    """`rqakit reproduce --profile toy --check` from nothing: every chapter runs, and the results
    equal the committed reports/toy row by row (the toy computes in fp32 on every host)."""
    out, overrides = tmp_path / "runs" / "toy" / "report", {"runtime.workdir": str(tmp_path / "runs")}
    start = time.time()
    assert main(["reproduce", "--profile", "toy", "--check", "--set", f"runtime.workdir={tmp_path / 'runs'}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    elapsed = time.time() - start
    print(f"toy end to end: {elapsed:.1f} s")
    assert summary["chapters"] == {c: "ran" for c in CHAPTERS}
    assert summary["check"]["within"] and summary["check"]["compared"] > 100 and summary["check"]["missing"] == 0
    assert_complete_report(out, summary)
    chapters = json.loads((out / "chapters.json").read_text())["chapters"]
    timings = pd.DataFrame(json.loads((out / "timings.json").read_text()))
    total = timings.query("system == 'reproduce' and metric == 'wall_time_s'")["value"].tolist()
    assert total == pytest.approx([sum(chapters[c]["wall_time_s"] for c in CHAPTERS)], rel=1e-3)
    assert all(0 < chapters[c]["overhead_s"] < chapters[c]["wall_time_s"] for c in CHAPTERS)
    report = (out / "report.md").read_text()
    assert "random tiny BERT" in report and "07_report" in report

    again = reproduce("toy", out=out, overrides=overrides)
    assert again["chapters"] == {c: "cached" for c in CHAPTERS}   # no kernel started, nothing rebuilt

    # A value only a stage checks: the baselines fail on an unknown measure, in chapter 02.
    bad = {**overrides, "evaluate.measures": "[Bogus@10]"}
    assert main(["reproduce", "--profile", "toy", "--out", str(out), "--chapters", "02",
                 "--set", *[f"{k}={v}" for k, v in bad.items()]]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("rqakit: error: chapter 02_baselines failed at cell ")
    assert "Bogus@10" in err and "RqaError" in err
    assert json.loads((out / "chapters.json").read_text())["chapters"]["02_baselines"]["status"] == "failed"


def test_a_chapter_killed_and_resumed_counts_the_time_of_both_attempts(tmp_path, monkeypatch):
    from rqakit.attempts import Attempts

    fake_chapters(monkeypatch)
    killed = Attempts(tmp_path / pipeline.ATTEMPTS_DIR / "03_warmup.json")
    killed.started -= 30.0          # a run of 03_warmup that was killed after 30 s
    killed.record()
    reproduce("toy", out=tmp_path, log=lambda m: None)
    record = json.loads((tmp_path / "chapters.json").read_text())["chapters"]
    assert record["03_warmup"]["attempts"] == 2 and record["03_warmup"]["wall_time_s"] == pytest.approx(32.0, abs=0.5)
    assert record["02_baselines"]["attempts"] == 1 and record["02_baselines"]["wall_time_s"] == 2.0
    assert not (tmp_path / pipeline.ATTEMPTS_DIR / "03_warmup.json").exists()

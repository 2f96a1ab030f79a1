"""The distillation study (rqakit.study, rqakit.report.study): the queue, its exported run files,
grid choices on validation, reused arms, precisions kept apart, and a report from the files alone."""
import json

import numpy as np
import pytest
from conftest import SMALL_TOY

from rqakit.report.study import arm_shifts, clip_table, compare_condition, write_study
from rqakit.study import CONDITIONS, arm_runs, best_setting, condition, planned, read_runs, run_id, run_queue

QUERIES = [f"q{i}" for i in range(40)]


def record(cond, arm, seed, score, precision="bfloat16", overrides=None, val=None, shift=0.0, point=None):
    rng = np.random.default_rng(seed * 7 + (arm == "dynamic"))
    per_query = {q: float(np.clip(score + shift + rng.normal(scale=0.2), 0, 1)) for q in QUERIES}
    return {"run": run_id(cond, arm, seed, point), "condition": cond, "arm": arm, "seed": seed,
            "overrides": {**(overrides or {}), **(point or {})}, "precision": precision, "test": {"nDCG@10": score},
            "val": {"nDCG@10": score if val is None else val}, "test_per_query": per_query, "curves": None,
            "history": [], "wall_time_s": 10.0, "machine": "m", "commit": "c"}


def test_the_queue_trains_exports_and_then_has_nothing_left(toy_ws, tmp_path):
    base = [f"{k}={v}" for k, v in {**SMALL_TOY, "runtime.workdir": toy_ws.config.runtime.workdir}.items()]
    done = run_queue("toy", conditions=["power"], seeds=[1, 2], out=tmp_path, base_overrides=base,
                     log=lambda *a: None)
    assert done == ["power.dynamic.s1", "power.static.s1", "power.dynamic.s2", "power.static.s2"]  # pairs first
    records = {r["run"]: r for r in read_runs(tmp_path)}
    one = records["power.dynamic.s1"]
    folder = toy_ws.root / one["stage"] / one["folder_hash"]
    metrics = json.loads((folder / "metrics.json").read_text())["retriever"]
    assert one["test"]["nDCG@10"] == pytest.approx(metrics["nDCG@10"])
    assert len(one["test_per_query"]) == len(toy_ws.test.queries)
    assert np.mean(list(one["test_per_query"].values())) == pytest.approx(metrics["nDCG@10"])
    assert one["precision"] in ("float32", "bfloat16") and one["history"] and one["machine"]
    assert "grad_norm_ce" in one["history"][0] and "grad_norm_ce" not in records["power.static.s1"]["history"][0]
    assert one["drift"]["lists"] > 0 and one["drift"]["kl_warm_joint"]["mean"] > 0.0   # it trained, so it moved
    assert "drift" not in records["power.static.s1"]                    # a static run keeps no re-ranker
    assert (tmp_path / "teachers" / "listwise-warm.json").exists()
    assert run_queue("toy", conditions=["power"], seeds=[1, 2], out=tmp_path, base_overrides=base,
                     log=lambda *a: None) == []


def test_a_re_ranker_that_never_moved_has_no_drift_and_the_drift_of_one_that_did_is_added_later(toy_ws, tmp_path):
    """The warm re-ranker put where a joint run keeps its own: KL 0 to itself, the same top passage
    on every list; a run file exported without the measure gets it from its folder."""
    import shutil

    from rqakit.study import add_measures, teacher_drift

    base = [f"{k}={v}" for k, v in {**SMALL_TOY, "runtime.workdir": toy_ws.config.runtime.workdir}.items()]
    run_queue("toy", conditions=["power"], seeds=[1], out=tmp_path, base_overrides=base, log=lambda *a: None)
    unmoved = tmp_path / "unmoved"
    shutil.copytree(toy_ws.folder("warmup_ce") / "model", unmoved / "reranker")
    same = teacher_drift(toy_ws, unmoved, seed=1)
    assert same["kl_warm_joint"]["q95"] == pytest.approx(0.0, abs=1e-4) and same["top1_agreement"] == 1.0
    assert same["p_positive_joint"]["q50"] == pytest.approx(same["p_positive_warm"]["q50"], abs=1e-4)
    assert teacher_drift(toy_ws, tmp_path, seed=1) is None               # no reranker/ here: a static run

    path = tmp_path / "runs" / "power.dynamic.s1.json"
    record = json.loads(path.read_text())
    moved = record.pop("drift")
    path.write_text(json.dumps(record))
    assert add_measures("toy", tmp_path, base, log=lambda *a: None) == ["power.dynamic.s1"]
    assert json.loads(path.read_text())["drift"] == moved                # the same folder, the same scores
    assert add_measures("toy", tmp_path, base, log=lambda *a: None) == []


def test_a_static_run_with_a_trained_teacher_names_the_dynamic_run_it_distilled_from(toy_ws, tmp_path):
    """trained-teacher's static arm distils from the run two-epochs exports for its seed (one folder,
    trained once); its record names that run, and a record exported without the name gets it later."""
    from rqakit.study import add_measures

    base = [f"{k}={v}" for k, v in {**SMALL_TOY, "runtime.workdir": toy_ws.config.runtime.workdir}.items()]
    quiet = {"out": tmp_path, "base_overrides": base, "log": lambda *a: None}
    assert run_queue("toy", conditions=["trained-teacher"], seeds=[1], **quiet) == ["trained-teacher.static.s1"]
    path = tmp_path / "runs" / "trained-teacher.static.s1.json"
    source = json.loads(path.read_text())["teacher_run"]
    teacher = toy_ws.root / source["stage"] / source["folder_hash"]
    assert (teacher / "reranker").is_dir() and source["stage"].startswith("joint-dynamic-")
    assert source["test"] == json.loads((teacher / "metrics.json").read_text())["retriever"]
    assert source["machine"] and source["precision"] in ("float32", "bfloat16") and source["wall_time_s"] > 0
    run_queue("toy", conditions=["two-epochs"], seeds=[1], **quiet)
    paired = json.loads((tmp_path / "runs" / "two-epochs.dynamic.s1.json").read_text())
    assert (paired["folder_hash"], paired["finished_at"]) == (source["folder_hash"], source["finished_at"])

    record = json.loads(path.read_text())
    record.pop("teacher_run")
    path.write_text(json.dumps(record))
    assert add_measures("toy", tmp_path, base, log=lambda *a: None) == ["trained-teacher.static.s1"]
    assert json.loads(path.read_text())["teacher_run"] == source
    assert add_measures("toy", tmp_path, base, log=lambda *a: None) == []


def test_a_run_names_the_first_stages_its_overrides_rebuild_and_only_those_that_are_built(toy_ws, tmp_path):
    import copy

    from rqakit.config import apply_overrides
    from rqakit.stages import Workspace
    from rqakit.study import own_stages

    base = [f"{k}={v}" for k, v in {**SMALL_TOY, "runtime.workdir": toy_ws.config.runtime.workdir}.items()]
    run_queue("toy", conditions=["power"], seeds=[1], out=tmp_path, base_overrides=base, log=lambda *a: None)
    assert "own_stages" not in read_runs(tmp_path)[0]                  # the profile's own first stages
    assert own_stages(toy_ws, toy_ws) == []
    longer = Workspace(apply_overrides(copy.deepcopy(toy_ws.config),
                                       {"model.p_max_len": 2 * toy_ws.config.model.p_max_len}))
    assert own_stages(longer, toy_ws) == []                             # never built: nothing to count
    stages = own_stages(toy_ws, longer)         # seen from a profile that reads longer passages
    assert [s["stage"] for s in stages] == ["baselines", "warmup_de", "warmup_ce", "augment"]
    assert [s["folder_hash"] for s in stages] == [toy_ws.folder(s["stage"]).name for s in stages]
    assert all(s["wall_time_s"] > 0 and s["precision"] == toy_ws.compute_dtype for s in stages)


def test_a_conditions_wall_time_counts_its_own_first_stages_once():
    import pandas as pd

    from rqakit.report.study import wall_time_table

    stages = [{"stage": "baselines", "folder_hash": "b", "precision": "bfloat16", "wall_time_s": 1800.0},
              {"stage": "warmup_de", "folder_hash": "w", "precision": "bfloat16", "wall_time_s": 1800.0}]
    runs = [record("best-retriever", "dynamic", seed, 0.7) for seed in (1, 2)] + [record("power", "dynamic", 1, 0.7)]
    for r in runs[:2]:
        r.update(own_stages=stages, wall_time_s=3600.0)                 # both runs read the same two folders
    frame = wall_time_table(runs).set_index("condition")
    assert frame.loc["best-retriever", "runs"] == 2
    assert frame.loc["best-retriever", "wall time (h)"] == pytest.approx(3.0)
    assert frame.loc["best-retriever", "of which first stages (h)"] == pytest.approx(1.0)
    assert frame.loc["power", "wall time (h)"] == pytest.approx(10.0 / 3600)
    assert pd.isna(frame.loc["power", "of which first stages (h)"])


def test_the_report_sets_a_retrained_teacher_against_the_run_it_pairs_with():
    from rqakit.artifacts import machine_cpu
    from rqakit.report.study import (
        _machine_limits,
        _teacher_source_lines,
        own_teacher_pairs,
        seed_table,
        teacher_source_table,
    )

    cond = condition("trained-teacher")
    trained = {"joint.epochs": 2.0, "joint.teacher": "joint"}
    records, sources = [], {}
    for seed, score in ((1, 0.74), (2, 0.72), (3, 0.73)):
        dyn = record("two-epochs", "dynamic", seed, score, overrides={"joint.epochs": 2.0})
        dyn.update(folder_hash=f"h{seed}", finished_at=f"t{seed}", machine="xeon")
        sources[seed] = {"stage": f"joint-dynamic-m8-s{seed}", "folder_hash": f"h{seed}", "machine": "epyc",
                         "precision": "bfloat16", "commit": "c", "finished_at": f"t{seed}", "test": {"nDCG@10": score}}
        records += [dyn, record("trained-teacher", "static", seed, 0.75, overrides=trained)]
        records[-1]["machine"] = "xeon"
    records[3]["teacher_run"] = sources[2]                                        # the exported run itself
    records[5]["teacher_run"] = {**sources[3], "finished_at": "later", "test": {"nDCG@10": 0.70},   # trained again
                                 "wall_time_s": 5400.0}
    frame = teacher_source_table(records, cond)
    assert list(frame["seed"]) == [2, 3]
    assert list(frame["teacher"]) == ["the exported run", "retrained on epyc"]
    assert list(frame["teacher - exported"]) == pytest.approx([0.0, -0.03])
    assert frame["teacher wall time (h)"].iloc[1] == 1.5
    text = "\n".join(_teacher_source_lines(records, cond))
    assert "Seed 1 was exported before run records named the teacher run; each trained on the machine" in text
    # paired with the teacher runs themselves: seed 3's retrained 0.70 in place of its exported 0.73
    assert own_teacher_pairs(records, cond)["diff"] == pytest.approx(-0.03)
    assert compare_condition(records, cond)["diff"] == pytest.approx(-0.02)
    assert ("Paired instead with the run each static run distilled from (the retrained one where there is one): "
            "dynamic - static -0.030, 95 % CI [") in text
    records[1]["machine"] = "epyc"                                               # seed 1's static run moved machine
    assert "each trained on" not in "\n".join(_teacher_source_lines(records, cond))
    assert _teacher_source_lines(records, condition("two-epochs")) == []         # the warm teacher: nothing to name
    # a condition whose runs span machines names each seed's CPU, and says so beside its verdict
    table = seed_table(records, cond).set_index("seed")
    assert table.loc[1, "CPU"] == "static: epyc; dynamic: xeon" and table.loc[2, "CPU"] == "xeon"
    assert compare_condition(records, cond)["machines"] == ["epyc", "xeon"]
    limit = _machine_limits(records, [compare_condition(records, cond)])[0]
    assert limit.startswith("trained-teacher pairs runs of one precision from 2 CPUs (epyc; xeon)")
    assert limit.endswith("Measured: 1 run retrained on another CPU (trained teachers) moved test nDCG@10 by -0.030.")
    records[1]["machine"] = "xeon"
    assert "CPU" not in seed_table(records, cond).columns
    assert _machine_limits(records, [compare_condition(records, cond)]) == ()
    assert machine_cpu("Linux x86_64, AMD EPYC, 2 cores, native bf16, no GPU, torch 2.13.0+cpu") == "AMD EPYC"


def test_a_grid_condition_runs_its_candidates_then_every_seed_at_the_best_on_validation():
    cond = condition("ce-optimizer")
    first = planned(cond, [])
    assert [t[3] for t in first] == [run_id(cond.key, "dynamic", 1, p) for p in cond.grid]
    records = [record(cond.key, "dynamic", 1, 0.70, point=p, val=v) for p, v in zip(cond.grid, (0.6, 0.8, 0.7))]
    later = planned(cond, records)
    assert {t[2] == cond.grid[1] for t in later} == {True}                 # the best validation score
    assert [t[1] for t in later] == list(cond.seeds) and {t[0] for t in later} == {"dynamic"}  # static is reused
    assert later[0][3] == records[1]["run"]                                 # its first-seed run is kept
    # the report's grid table: the chosen candidate, and the profile's own run of that arm and seed
    # below the candidates, in the grid's precision only
    from rqakit.report.study import grid_table

    profile = record("power", "dynamic", 1, 0.70, val=0.9)
    table = grid_table(records + [profile], cond)
    assert list(table["chosen"]) == ["", "yes", "", ""] and table.iloc[-1, 1] == 0.9
    assert "not a candidate" in table.iloc[-1, 0]
    profile["precision"] = "float32"
    assert len(grid_table(records + [profile], cond)) == len(cond.grid)


def test_a_reused_arm_reads_the_runs_of_its_condition():
    records = [record("power", arm, s, 0.7) for arm in ("dynamic", "static") for s in (1, 2)]
    records += [record("teacher-noise", "static", s, 0.69, overrides={"joint.teacher_dropout": True}) for s in (1, 2)]
    cond = condition("teacher-noise")
    assert [r["run"] for r in arm_runs(records, cond, "dynamic")] == ["power.dynamic.s1", "power.dynamic.s2"]
    assert [r["run"] for r in arm_runs(records, cond, "static")] == ["teacher-noise.static.s1",
                                                                     "teacher-noise.static.s2"]


def test_a_comparison_never_mixes_precisions():
    records = [record("power", arm, s, 0.70 + 0.01 * s, "bfloat16") for arm in ("dynamic", "static") for s in (1, 2, 3)]
    records += [record("power", arm, s, 0.60, "float32") for arm in ("dynamic", "static") for s in (4, 5)]
    c = compare_condition(records, condition("power"))
    assert c["precision"] == "bfloat16" and c["other_precisions"] == ["float32"]
    assert c["seeds_dynamic"] == [1, 2, 3] and c["static"] == pytest.approx(0.72)


def test_the_report_comes_from_the_run_files_alone_and_words_follow_the_tests(tmp_path):
    """Level arms get "no difference larger than X", an arm ahead in every seed "dynamic better"."""
    rng = np.random.default_rng(1)
    level = [record("power", arm, s, 0.70 + rng.normal(scale=0.01)) for arm in ("dynamic", "static") for s in range(1, 9)]
    ahead = [record("teacher-noise", "static", s, r["test"]["nDCG@10"] - 0.03 - 0.001 * s,
                    overrides={"joint.teacher_dropout": True})
             for s, r in ((r["seed"], r) for r in level if r["arm"] == "dynamic")]
    q = {"mean": 0.02, "q05": 0.0, "q25": 0.005, "q50": 0.01, "q75": 0.02, "q95": 0.05}
    for r in level:
        if r["arm"] == "dynamic":    # seed s's re-ranker agrees with the warm one on 0.9 + s / 1000 of lists
            r["drift"] = {"lists": 256, "temperature": 1.0, "kl_warm_joint": q, "top1_agreement": 0.9 + r["seed"] / 1000,
                          "p_positive_warm": q, "p_positive_joint": q, "entropy_joint": q}
            r["history"] = [{"step": i, "kl": 0.04 if i < 5 else 0.05} for i in range(20)]
    for r in level + ahead:
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / f"{r['run']}.json").write_text(json.dumps(r))
    written = write_study(read_runs(tmp_path), tmp_path, "toy")
    results = json.loads((tmp_path / "results.json").read_text())
    by = {c["condition"]: c for c in results["comparisons"]}
    assert by["power"]["p"] > 0.05 and by["power"]["verdict"].startswith("no difference larger than")
    assert by["teacher-noise"]["verdict"] == "dynamic better" and by["teacher-noise"]["p"] < 0.05
    assert not by["two-epochs"]["complete"] and "p_adjusted" not in by["two-epochs"]
    # Benjamini-Hochberg over the 2 tested conditions: the larger p stays, the smaller one doubles
    # unless that passes the larger
    p_small, p_large = by["teacher-noise"]["p"], by["power"]["p"]
    assert by["power"]["p_adjusted"] == pytest.approx(p_large) and by["power"]["family"] == 2
    assert by["teacher-noise"]["p_adjusted"] == pytest.approx(min(2 * p_small, p_large))
    text = (tmp_path / "report.md").read_text()
    assert "| dynamic better |" in text and "Not run yet." in text and "beats" not in text
    assert "significantly better, after adjustment over 2 conditions, under: teacher-noise (" in text
    # drift: means over the 8 dynamic runs, the retriever's loss over the last 10 steps only
    assert "power 0.010 nats (0.20x), 90%" in text and "drift" in written["tables"]
    # each changed arm against the same arm of the runs it changes: teacher-noise's static arm against power's
    assert "| teacher-noise | static | the static arm of power | 8 |" in text and "shifts" in written["tables"]
    assert "A warm teacher that leads is not tested" not in text      # no teacher check exported here
    (tmp_path / "teachers").mkdir()
    rows = [{"candidates": "bm25 top 30", "retriever": 0.69, "teacher": 0.72}]
    (tmp_path / "teachers" / "listwise-warm.json").write_text(json.dumps(
        {"teacher": "listwise-warm", "leads": {"leads": False, "measure": "nDCG@10", "queries": 81, "rows": rows,
                                               "split": "validation"}}))
    write_study(read_runs(tmp_path), tmp_path, "toy")
    text = (tmp_path / "report.md").read_text()
    assert "does not lead the warm retriever on every validation candidate set (listwise-warm" in text
    assert "trained-teacher distils" not in text                      # named once it has a run
    key = "reranker_nDCG@10"
    for s in (1, 2):    # the teachers: two-epochs' dynamic re-rankers, 0.70 at step 0, 0.74 and 0.76 at the end
        teacher = record("two-epochs", "dynamic", s, 0.7, overrides={"joint.epochs": 2.0})
        teacher["curves"] = [{"step": 0, key: 0.70}, {"step": 30, key: 0.72 + 0.02 * s}]
        (tmp_path / "runs" / f"{teacher['run']}.json").write_text(json.dumps(teacher))
    student = record("trained-teacher", "static", 1, 0.7, overrides={"joint.epochs": 2.0, "joint.teacher": "joint"})
    (tmp_path / "runs" / f"{student['run']}.json").write_text(json.dumps(student))
    write_study(read_runs(tmp_path), tmp_path, "toy")
    text = (tmp_path / "report.md").read_text()
    assert ("trained-teacher distils its static arm from a stronger one, the re-ranker the dynamic runs of two-epochs "
            "end with (0.750 nDCG@10 on the validation pool against 0.700 for the warm one)") in text
    assert (tmp_path / "figures" / "differences.png").exists() and "conditions" in written["tables"]
    assert len(CONDITIONS) == text.count("\n### ")


@pytest.mark.slow
def test_rqakit_study_report_runs_the_notebook_on_the_run_files_alone(tmp_path, capsys):
    from rqakit.cli import main

    for arm in ("dynamic", "static"):
        for s in (1, 2, 3):
            r = record("power", arm, s, 0.70 + 0.01 * s + ({1: 0.004, 2: 0.007, 3: 0.004}[s] if arm == "dynamic" else 0.0))
            (tmp_path / "runs").mkdir(exist_ok=True)
            (tmp_path / "runs" / f"{r['run']}.json").write_text(json.dumps(r))
    assert main(["study", "--profile", "toy", "--report", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] == []
    assert (tmp_path / "notebooks" / "study.ipynb").exists() and (tmp_path / "report.md").exists()
    power = {c["condition"]: c for c in json.loads((tmp_path / "results.json").read_text())["comparisons"]}["power"]
    assert power["diff"] == pytest.approx(0.005) and power["test"] == "paired t over seeds" and power["p"] < 0.05
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["study", "--profile", "toy", "--report", "--out", str(empty)]) == 2
    assert "no exported runs in" in capsys.readouterr().err


def test_rqakit_study_trains_only_the_conditions_and_seeds_asked(monkeypatch, tmp_path, capsys):
    """How a reader recomputes one run: its file moved away, `--conditions C --seeds S`."""
    from rqakit import pipeline, study
    from rqakit.cli import main

    asked = {}
    monkeypatch.setattr(study, "run_queue", lambda profile, **kw: asked.update(kw) or ["two-epochs.static.s3"])
    monkeypatch.setattr(pipeline, "build_study", lambda profile, **kw: {"report": "report.md"})
    assert main(["study", "--profile", "toy", "--conditions", "two-epochs", "--seeds", "3", "--out", str(tmp_path)]) == 0
    assert (asked["conditions"], asked["seeds"]) == (["two-epochs"], [3])
    assert json.loads(capsys.readouterr().out)["trained"] == ["two-epochs.static.s3"]


def test_a_seed_without_its_pair_waits():
    records = [record("power", arm, s, 0.70 + 0.01 * s) for arm in ("dynamic", "static") for s in (1, 2, 3)]
    records.append(record("power", "dynamic", 4, 0.9))                  # its static run is still training
    c = compare_condition(records, condition("power"))
    assert c["seeds_dynamic"] == c["seeds_static"] == [1, 2, 3] and c["test"] == "paired t over seeds"


def complete(records: list[dict], key: str, val: dict) -> None:
    """Export every run condition `key` plans, each arm at validation score `val[arm]`."""
    cond = condition(key)
    while todo := [t for t in planned(cond, records) if t[3] not in {r["run"] for r in records}]:
        arm, seed, point, _ = todo[0]
        records.append(record(key, arm, seed, 0.70, overrides=cond.arms()[arm].overrides, val=val[arm], point=point))


def test_the_best_retriever_waits_for_its_conditions_then_retrains_the_best_arm_on_validation(tmp_path):
    cond, records = condition("best-retriever"), []
    for key in ("power", "teacher-noise", "ce-optimizer", "pointwise-warm", "soft-targets"):
        complete(records, key, {"dynamic": 0.70, "static": 0.71})
    assert best_setting(records, cond) is None and planned(cond, records) == []     # two-epochs has not run
    complete(records, "two-epochs", {"dynamic": 0.72, "static": 0.74})
    best = best_setting(records, cond)
    assert (best["condition"], best["arm"], best["val"], best["seeds"]) == ("two-epochs", "static", 0.74, 5)
    runs = planned(cond, records)
    assert [(t[0], t[1]) for t in runs] == [("static", 1), ("static", 2), ("static", 3)]
    assert runs[0][2] == {"joint.epochs": 2.0, "model.p_max_len": 256}
    for arm, seed, point, _ in runs:
        r = record(cond.key, arm, seed, 0.72 + 0.01 * seed, point=point)
        records.append({**r, "baselines_test": {"bm25": 0.686, "zeroshot-mean": 0.645}})
    complete(records, "trained-teacher", {"static": 0.76})              # a control, higher on validation
    complete(records, "tower-clip", {"dynamic": 0.73})                  # a control, lower
    records.append(record("confirm", "dynamic", 11, 0.70, val=0.80))   # a candidate's setting on fresh seeds
    assert best_setting(records, cond)["condition"] == "two-epochs"     # controls never become the choice
    write_study(records, tmp_path, "toy")
    got = json.loads((tmp_path / "results.json").read_text())["best"][0]
    assert got["complete"] and got["test"] == pytest.approx(0.74) and got["source_test"] == pytest.approx(0.70)
    text = (tmp_path / "report.md").read_text()
    assert "Chosen on validation: two-epochs, static arm" in text
    assert "passages up to 256 tokens" in text and "bge-small-en-v1.5" in text
    assert "| backbone zero-shot, mean pooling, passages up to 256 tokens | 0.645 |" in text
    assert ("Higher on validation, but not a candidate: trained-teacher, static arm (mean validation 0.760 over 5 "
            "seeds; test 0.700 ± 0.000 at the profile's passage length). It belongs to \"A better teacher that does "
            "not move\"") in text
    assert text.count("but not a candidate") == 1                        # not tower-clip (lower), not confirm
    assert "| two-epochs, static, passages up to 256 tokens | 0.740 | 0.010 | 3 | this study |" in text
    assert "| two-epochs, static, profile's passage length | 0.700 | 0.000 | 5 | this study |" in text
    half = 4.3027 * 0.01 / 3 ** 0.5          # t(0.975, 2) * sd(0.73, 0.74, 0.75) / sqrt(3), both comparisons
    effect = got["length_effect"]           # seeds 1-3 at 256 tokens against the same seeds at 128
    assert effect["test"] == "paired t over seeds" and effect["seeds"] == [1, 2, 3]
    assert effect["ci"] == [pytest.approx(0.04 - half, abs=1e-4), pytest.approx(0.04 + half, abs=1e-4)]
    bge = got["published"]["bge-small-en-v1.5"]
    assert bge["test"] == "one-sample t over seeds" and bge["diff"] == pytest.approx(0.74 - 0.7127)
    assert bge["ci"] == [pytest.approx(0.0273 - half, abs=1e-4), pytest.approx(0.0273 + half, abs=1e-4)]
    assert "(3 seeds, bfloat16): +0.040, 95 % CI [+0.015, +0.065]" in text
    assert "bge-small-en-v1.5 +0.027, 95 % CI [+0.002, +0.052]" in text


def test_a_condition_significant_alone_but_not_after_adjusting_is_a_lead_and_one_still_running_is_named():
    from rqakit.report.study import conclusions

    lead = {"condition": "two-epochs", "complete": True, "in_progress": False, "p": 0.04, "p_adjusted": 0.08,
            "family": 2, "diff": 0.02, "ci": [0.001, 0.039], "verdict": "dynamic better"}
    level = {"condition": "soft-targets", "complete": True, "in_progress": False, "p": 0.5, "p_adjusted": 0.5,
             "family": 2, "diff": 0.0, "ci": [-0.01, 0.01], "verdict": "no difference larger than 0.010"}
    running = {"condition": "ce-optimizer", "complete": True, "in_progress": True, "seeds_dynamic": [1, 2], "seeds_planned": 8,
               "p": 0.3, "diff": 0.02, "ci": [-0.02, 0.06], "verdict": "no difference larger than 0.060"}
    text = " ".join(conclusions([lead, level]))
    assert ("leads, significant alone but not after adjustment over 2 conditions (a lead for fresh seeds, not a "
            "finding), under: two-epochs (+0.020, p = 0.04; 0.08 adjusted).") in text
    assert "significantly better" not in text and "an advantage that survives the adjustment" in text
    assert "No significant difference under: soft-targets." in text
    text = " ".join(conclusions([level, running]))
    assert "No significant difference under: soft-targets." in text
    assert "Still running, so its numbers will move: ce-optimizer (2 of 8 seed pairs, +0.020, 95 % CI [-0.020, +0.060])" in text


def test_the_verdict_column_and_the_main_report_say_when_the_adjustment_undoes_a_verdict(tmp_path):
    from rqakit.report.study import study_summary, verdict_text

    lead = {"condition": "two-epochs", "complete": True, "in_progress": True, "p": 0.04, "p_adjusted": 0.08,
            "diff": 0.02, "verdict": "dynamic better"}
    assert verdict_text(lead) == "dynamic better alone; not after adjustment"
    assert verdict_text({**lead, "p_adjusted": 0.04}) == "dynamic better"
    assert verdict_text({**lead, "verdict": "no difference larger than 0.039"}) == "no difference larger than 0.039"
    power = {"condition": "power", "complete": True, "ci": [-0.017, 0.011], "p": 0.66, "p_adjusted": 0.96,
             "seeds_dynamic": list(range(1, 9)), "precision": "bfloat16", "dynamic": 0.694, "dynamic_sd": 0.012,
             "static": 0.696, "static_sd": 0.014, "diff": -0.003, "test": "paired t over seeds",
             "verdict": "no difference larger than 0.017", "detectable": 0.020}
    (tmp_path / "results.json").write_text(json.dumps({"comparisons": [power, lead]}))
    text = study_summary(tmp_path)
    assert "verdict: no difference larger than 0.017" in text
    assert ("Of its 1 other conditions tested so far (two-epochs), two-epochs: dynamic better alone; not after "
            "adjustment (+0.020, p = 0.04, 0.08 adjusted, still running)") in text
    (tmp_path / "results.json").write_text(json.dumps({"comparisons": [power, {**lead, "verdict": "no difference"}]}))
    assert "none gives either arm a significant advantage" in study_summary(tmp_path)


def test_the_gap_by_step_pairs_seeds_and_gives_the_run_level_interval():
    from rqakit.report.study import gap_by_step

    def run(arm, seed, values):
        r = record("two-epochs", arm, seed, 0.7)
        r["curves"] = [{"step": st, "retriever_nDCG@10": v} for st, v in values.items()]
        return r

    dyn = [run("dynamic", 1, {0: 0.70, 30: 0.72}), run("dynamic", 2, {0: 0.70, 30: 0.74}),
           run("dynamic", 3, {0: 0.70, 30: 0.99})]                        # seed 3 has no static pair
    sta = [run("static", 1, {0: 0.70, 30: 0.70}), run("static", 2, {0: 0.70, 30: 0.70})]
    gap = gap_by_step(dyn, sta).set_index("step")
    assert list(gap["n"]) == [2, 2] and gap.loc[0, "diff"] == pytest.approx(0.0)
    half = 12.7062 * 0.01                   # t(0.975, 1) * sd(0.02, 0.04) / sqrt(2)
    assert gap.loc[30, "diff"] == pytest.approx(0.03)
    assert (gap.loc[30, "lo"], gap.loc[30, "hi"]) == (pytest.approx(0.03 - half, abs=1e-5),
                                                      pytest.approx(0.03 + half, abs=1e-5))


def test_a_lead_is_tested_again_on_fresh_seeds_outside_the_family_and_confirmed_only_by_its_own_test(tmp_path):
    from rqakit.report.study import compare_all, conclusions, confirmation
    from rqakit.stats import detectable_difference
    from rqakit.study import lead_to_confirm

    cond, records = condition("confirm"), []
    for key in ("power", "teacher-noise", "ce-optimizer", "pointwise-warm"):
        complete(records, key, {"dynamic": 0.70, "static": 0.70})
    for r in records:   # test scores: level, a seed-to-seed spread and no direction
        r["test"] = {"nDCG@10": 0.70 + 0.01 * ((r["seed"] * 3 + (r["arm"] == "dynamic")) % 4)}
    assert lead_to_confirm(records, cond) is None and planned(cond, records) == []       # two-epochs has not run
    two = condition("two-epochs")
    for seed in two.seeds:   # dynamic ahead by 0.02 +- 0.002 on every seed: p far below 0.05
        for arm, score in (("dynamic", 0.72 + 0.002 * (seed % 2)), ("static", 0.70)):
            records.append(record("two-epochs", arm, seed, score + 0.01 * seed, overrides=two.arms()[arm].overrides))
    lead = lead_to_confirm(records, cond)
    assert lead["condition"] == "two-epochs" and lead["p"] < 0.001 and lead["diff"] == pytest.approx(0.0212)
    runs = planned(cond, records)
    assert [(arm, seed) for arm, seed, _, _ in runs[:3]] == [("dynamic", 11), ("static", 11), ("dynamic", 12)]
    assert len(runs) == 10 and all(point == {"joint.epochs": 2.0} for _, _, point, _ in runs)
    assert runs[0][3] == "confirm.dynamic[epochs=2.0].s11"

    def tested_again(gap, pairs=5):
        fresh = [record("confirm", arm, seed, 0.70 + 0.01 * (seed % 3) + (gap + 0.003 * (seed % 2)) * (arm == "dynamic"),
                        point=point) for arm, seed, point, _ in runs[:2 * pairs]]
        return {c["condition"]: c for c in compare_all(records + fresh)}

    assert confirmation(tested_again(0.02, pairs=1)["confirm"]).endswith(
        "on fresh seeds (one pre-stated test, not adjusted over conditions): still running, 1 of 5 seed pairs so far.")
    assert "): 3 of 5 seed pairs so far, +0.02" in confirmation(tested_again(0.02, pairs=3)["confirm"])

    by = tested_again(0.02)
    assert "p_adjusted" not in by["confirm"] and by["two-epochs"]["family"] == 5      # one pre-stated test
    assert by["confirm"]["confirms"] == "two-epochs" and by["confirm"]["seeds_dynamic"] == [11, 12, 13, 14, 15]
    # stated before the fresh runs: what 5 pairs detect if they spread as the lead's did (sd 0.0011 here)
    sd = float(np.std([0.022, 0.020, 0.022, 0.020, 0.022], ddof=1))
    assert lead["sd"] == pytest.approx(sd) and by["confirm"]["planned_detectable"] == pytest.approx(
        detectable_difference(sd / np.sqrt(5), 4))
    assert confirmation(by["confirm"]).endswith("confirmed, dynamic better.")
    said = conclusions(list(by.values()))
    assert said[-1].startswith("The one difference a test of its own confirms: dynamic better under two-epochs")
    assert not conclusions(list(tested_again(-0.02).values()))[-1].startswith("The one difference")
    assert "seeds 11-15" in confirmation(by["confirm"])
    assert "not confirmed (static better)" in confirmation(tested_again(-0.02)["confirm"])   # reversed: not held
    assert "not confirmed (no difference larger than" in confirmation(tested_again(0.0)["confirm"])
    for r in records:
        if r["condition"] == "two-epochs":
            r["test"] = {"nDCG@10": 0.70 + 0.01 * ((r["seed"] * 3 + (r["arm"] == "dynamic")) % 4)}
    assert lead_to_confirm(records, cond) is None and planned(cond, records) == []
    again = next(c for c in compare_all(records) if c["condition"] == "confirm")
    assert confirmation(again).startswith("No condition had a run-level p below 0.05")


def test_the_re_ranker_table_counts_the_runs_that_fall_below_their_teacher():
    from rqakit.report.study import reranker_table

    key = "reranker_nDCG@10"
    falls = record("two-epochs", "dynamic", 1, 0.7, overrides={"joint.epochs": 2.0})
    falls["curves"] = [{"step": 0, key: 0.70}, {"step": 30, key: 0.68}, {"step": 60, key: 0.74}]
    rises = record("two-epochs", "dynamic", 2, 0.7, overrides={"joint.epochs": 2.0})
    rises["curves"] = [{"step": 0, key: 0.70}, {"step": 30, key: 0.72}, {"step": 60, key: 0.76}]
    reused = record("power", "dynamic", 1, 0.7)          # teacher-noise reuses it: counted once, under power
    reused["curves"] = [{"step": 0, key: 0.70}, {"step": 30, key: 0.71}]
    frame = reranker_table([falls, rises, reused]).set_index("condition")
    assert list(frame.index) == ["power", "two-epochs"]
    two = frame.loc["two-epochs"]
    assert two["runs"] == 2 and two["runs that fall below step 0"] == 1 and two["lowest at step"] == 0
    assert two["last step"] == pytest.approx(0.75) and two["last - step 0"] == pytest.approx(0.05)
    assert two["largest fall"] == pytest.approx(0.02)
    assert frame.loc["power", "runs that fall below step 0"] == 0 and frame.loc["power", "largest fall"] < 0


def test_a_change_is_set_against_the_same_arm_of_the_runs_it_changes():
    """teacher-noise changes the static arm only: its static runs minus power's static runs, paired by
    seed in one precision (a run of another precision never pairs). two-epochs changes both arms:
    each against power's same arm. Fresh seeds, as a confirmation's, pair with nothing."""
    records = [record("power", arm, s, 0.70 + 0.01 * s) for s in (1, 2, 3) for arm in ("dynamic", "static")]
    records += [record("teacher-noise", "static", s, 0.70 + 0.01 * s - d, overrides={"joint.teacher_dropout": True})
                for s, d in ((1, 0.010), (2, 0.020), (3, 0.030))]
    records.append(record("teacher-noise", "static", 4, 0.9, precision="float32"))
    (shift,) = compare_condition(records, condition("teacher-noise"))["arm_shifts"]
    assert (shift["arm"], shift["reference"], shift["seeds"]) == ("static", "power", [1, 2, 3])
    assert shift["diff"] == pytest.approx(-0.020) and shift["ci"][0] < -0.020 < shift["ci"][1]
    assert arm_shifts(records[:6] + records[6:7], condition("teacher-noise"), "bfloat16") == []   # one seed
    longer = [record("two-epochs", arm, s, 0.70 + 0.01 * s + gain + 0.001 * s, overrides={"joint.epochs": 2.0})
              for s in (1, 2, 3) for arm, gain in (("dynamic", 0.04), ("static", 0.02))]
    both = {s["arm"]: s for s in arm_shifts(records + longer, condition("two-epochs"), "bfloat16")}
    assert {s["reference"] for s in both.values()} == {"power"}
    assert both["dynamic"]["diff"] == pytest.approx(0.042) and both["static"]["diff"] == pytest.approx(0.022)
    fresh = [record("confirm", arm, s, 0.7, overrides={"joint.epochs": 2.0}) for s in (11, 12) for arm in both]
    assert arm_shifts(records + fresh, condition("confirm"), "bfloat16") == []
    assert arm_shifts(records, condition("power"), "bfloat16") == []


def test_the_clip_table_reads_the_norm_each_run_was_clipped_by():
    """One global norm of 10 scales a retriever gradient of norm 1 by 0.1; clipped apart, that
    gradient is left whole; a static run's norm of 2 alone is halved."""
    def run(cond, arm, steps, overrides=None):
        r = record(cond, arm, 1, 0.7, overrides=overrides)
        r["history"] = steps
        return r

    records = [run("power", "dynamic", [{"grad_norm": 10.0, "grad_norm_de": 1.0, "grad_norm_ce": 9.95}] * 3),
               run("tower-clip", "dynamic", [{"grad_norm": 10.0, "grad_norm_de": 0.5, "grad_norm_ce": 9.99}] * 3,
                   {"joint.clip_per_tower": True}),
               run("power", "static", [{"grad_norm": 2.0, "grad_norm_de": 2.0}] * 3)]
    table = clip_table(records).set_index(["condition", "arm"])
    scaled = table["retriever's gradient scaled by (median)"]
    assert scaled["power", "dynamic"] == pytest.approx(0.1) and table.loc[("power", "dynamic"), "clipped"] == 1.0
    assert scaled["tower-clip", "dynamic"] == 1.0 and table.loc[("tower-clip", "dynamic"), "clipped"] == 0.0
    assert scaled["power", "static"] == pytest.approx(0.5)


def test_the_main_report_quotes_the_study_again_from_its_results_alone(tmp_path):
    from rqakit.report.build import refresh_study_summary

    study, main = tmp_path / "toy-study", tmp_path / "toy"
    study.mkdir(), main.mkdir()
    power = {"condition": "power", "complete": True, "ci": [-0.017, 0.011], "p": 0.66, "seeds_dynamic": [1, 2, 3],
             "precision": "bfloat16", "dynamic": 0.694, "dynamic_sd": 0.012, "static": 0.696, "static_sd": 0.014,
             "diff": -0.003, "test": "paired t over seeds", "verdict": "no difference larger than 0.017",
             "detectable": 0.020}
    (study / "results.json").write_text(json.dumps({"comparisons": [power]}))
    before = ("## Ablations\n\ntable\n\n<!-- study:start -->\nThe distillation study, an older verdict.\n"
              "<!-- study:end -->\n\nThe run-level test decides.\n")
    (main / "report.md").write_text(before)
    assert refresh_study_summary(main, study)
    text = (main / "report.md").read_text()
    assert "older verdict" not in text and "over 3 seeds per arm (bfloat16): dynamic 0.694 ± 0.012" in text
    assert text.startswith("## Ablations\n\ntable\n\n<!-- study:start -->\nThe distillation study ([toy-study/report.md]")
    assert text.endswith(".\n<!-- study:end -->\n\nThe run-level test decides.\n")
    assert refresh_study_summary(main, study) and (main / "report.md").read_text() == text   # idempotent
    (main / "report.md").write_text("## Ablations\n\ntable\n")           # a report built before the study had runs
    assert not refresh_study_summary(main, study) and (main / "report.md").read_text() == "## Ablations\n\ntable\n"
    assert not refresh_study_summary(tmp_path / "absent", study)


def test_the_trained_teacher_control_says_where_the_lead_it_reuses_comes_from():
    from rqakit.report.study import teacher_control

    lead = {"condition": "two-epochs", "diff": 0.019, "ci": [0.004, 0.034]}
    shift = {"arm": "static", "reference": "two-epochs", "seeds": [1, 2, 3], "diff": 0.047, "ci": [0.033, 0.062],
             "p": 0.0007}
    control = {"condition": "trained-teacher", "diff": -0.028, "ci": [-0.044, -0.012], "p": 0.0077,
               "p_adjusted": 0.061, "arm_shifts": [shift]}
    text = teacher_control(control, [lead, control])
    assert text.startswith("Where the dynamic lead of two-epochs (+0.019) comes from, asked by trained-teacher")
    assert "scores +0.047 (95 % CI [+0.033, +0.062], p = 0.0007) against the static arm of two-epochs" in text
    assert "-0.028 (95 % CI [-0.044, -0.012], p = 0.0077; 0.061 adjusted): the better teacher" in text
    moving = {**control, "diff": 0.02, "ci": [0.005, 0.035]}             # dynamic beats even the better frozen teacher
    assert "a teacher that moves adds more" in teacher_control(moving, [lead, moving])
    unclear = {**control, "arm_shifts": [{**shift, "ci": [-0.01, 0.1]}]}
    assert "cannot tell" in teacher_control(unclear, [lead, unclear])
    noise = {**control, "condition": "teacher-noise"}                      # its static teacher is the warm one
    assert teacher_control(noise, [lead, noise]) is None
    assert teacher_control(control, [control]) is None                   # the lead it reuses has not run

"""`rqakit plan`: FLOPs per token by hand, the stages of a report with their work, cached ones apart."""
from types import SimpleNamespace

import pytest

from rqakit.config import load_config
from rqakit.plan import (
    EFFICIENCY,
    OVERHEAD,
    Lengths,
    Work,
    calibration,
    flops_per_token,
    model_seconds,
    plan,
    stage_work,
)
from rqakit.stages import Workspace, ablations


def test_flops_per_token_by_hand():
    config = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2)
    # 2 L (4h^2 + 2hf) + 4 L n h = 2*2*(64 + 64) + 4*2*10*4
    assert flops_per_token(config, 10) == 512 + 320


def test_the_plan_counts_every_stage_of_the_report(tmp_path, tiny_cache):
    cfg = load_config("toy", {"runtime.workdir": str(tmp_path)})
    ws = Workspace(cfg)
    lengths = Lengths(query=10.0, passage=50.0, pair=60.0, mnrl_passage=55.0)
    work = stage_work(ws, lengths)
    runs = [f"joint-{r['variant']}-m{r['list_size']}-s{r['seed']}" for r in ablations.planned_runs(ws)]
    assert list(work) == ["baselines", "warmup_de", "warmup_ce", "augment", "st_mnrl", *runs]
    scored = work["augment"][0]
    assert (scored.kind, scored.tokens) == ("score", len(ws.train.queries) * (cfg.augment.score_depth + 1) * 60.0)
    static, dynamic = work["joint-static-m4-s1"], work["joint-dynamic-m4-s1"]
    assert not any(w.seq_len == 60.0 for w in static)            # a frozen teacher: no cross-encoder pass
    assert any(w.kind == "train" and w.seq_len == 60.0 for w in dynamic)

    first = plan(cfg, peak_gflops=50.0)
    assert [r["stage"] for r in first["stages"]] == list(work) and not any(r["done"] for r in first["stages"])
    baselines = first["stages"][0]
    assert baselines["floor_s"] == pytest.approx(baselines["tflop"] * 1e12 / 50e9, rel=0.01, abs=1)
    assert baselines["estimate_s"] >= baselines["floor_s"]
    folder = ws.folder("baselines")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    second = plan(cfg, peak_gflops=50.0)
    assert second["stages"][0]["done"] and second["todo_estimate_s"] == first["todo_estimate_s"] - baselines["estimate_s"]


def test_the_calibration_is_the_median_of_measured_over_modelled_seconds():
    assert calibration([]) is None
    assert calibration([(10.0, 15.0), (30.0, 30.0), (20.0, 60.0)]) == pytest.approx(1.5)   # ratios 1.5, 1, 3
    assert calibration([(10.0, 20.0), (10.0, 40.0)]) == pytest.approx(3.0)


def test_model_seconds_give_each_kind_of_work_its_share_of_the_peak():
    config = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2)
    parts = [Work("train", 1000.0, 10.0, 3), Work("encode", 500.0, 10.0)]
    flops, seconds = model_seconds(parts, config, peak_gflops=1.0)
    assert flops == 3 * 1000 * 832 + 500 * 832
    assert seconds == pytest.approx((3 * 1000 * 832 / EFFICIENCY["train"] + 500 * 832 / EFFICIENCY["encode"]) / 1e9)


def test_the_plan_scales_its_estimates_by_what_finished_stages_took(tmp_path, tiny_cache):
    import json

    peak = 0.01   # GFLOP/s: the toy's stages take thousands of model seconds, so rounding does not blur them
    cfg = load_config("toy", {"runtime.workdir": str(tmp_path)})
    ws = Workspace(cfg)
    before = plan(cfg, peak_gflops=peak)
    assert before["calibration"] is None and before["calibrated_from"] == []
    warm = next(r for r in before["stages"] if r["stage"] == "warmup_de")
    model_s = warm["estimate_s"] / (1 + OVERHEAD)
    folder = ws.folder("warmup_de")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"wall_time_s": 300.0}))
    after = plan(cfg, peak_gflops=peak)
    assert after["calibrated_from"] == ["warmup_de"] and after["calibration"] == pytest.approx(300.0 / model_s, rel=0.05)
    row = next(r for r in after["stages"] if r["stage"] == "warmup_de")
    assert row["done"] and row["measured_s"] == 300 and row["estimate_s"] == pytest.approx(300, rel=0.01)
    for old, new in zip(before["stages"], after["stages"]):   # every stage scaled by the same factor
        if old["estimate_s"] > 100:
            assert new["estimate_s"] == pytest.approx(old["estimate_s"] / (1 + OVERHEAD) * after["calibration"], rel=0.01)
    (folder / "manifest.json").write_text(json.dumps({"wall_time_s": 300.0, "cpu_share": 0.5}))
    shared = plan(cfg, peak_gflops=peak)   # the share is shown beside the time, which counts as measured
    assert shared["calibration"] == after["calibration"]
    assert next(r for r in shared["stages"] if r["stage"] == "warmup_de")["cpu_share"] == 0.5


def test_the_study_plan_lists_its_runs_exported_ones_done_and_the_stages_they_need(tmp_path, tiny_cache, monkeypatch):
    import json

    from rqakit import study

    monkeypatch.chdir(tmp_path)   # the study folder: reports/toy-study
    cfg = load_config("toy", {"runtime.workdir": str(tmp_path / "runs")})
    report = {r["stage"] for r in plan(cfg, peak_gflops=50.0)["stages"]}
    rows = [r for r in plan(cfg, peak_gflops=50.0, study=True)["stages"] if r["stage"] not in report]
    names = [r["stage"] for r in rows]
    # power 8 seeds x 2 arms less the report's 3 seeds of each (the same folders): 10; teacher-noise's static
    # arm: 5; ce-optimizer: 3 grid points on seed 1, then seeds 2-5 at the first point: 7; pointwise-warm: 10
    # and its own warmup_ce and augment; soft-targets: 2 grid points on static seed 1, then 9 more: 11;
    # two-epochs: 10; trained-teacher's static arm: 5, its teachers two-epochs' dynamic runs (counted once);
    # tower-clip's dynamic arm: 5
    assert len(names) == len(set(names)) == 10 + 5 + 7 + 12 + 11 + 10 + 5 + 5
    assert not any(n.startswith("trained-teacher: ") for n in names)
    assert "power.dynamic.s1" not in names and "power.dynamic.s4" in names
    assert {"pointwise-warm: warmup_ce", "pointwise-warm: augment"} <= set(names)
    assert "pointwise-warm: warmup_de" not in names                           # the profile's own, in the report
    two = {r["stage"]: r for r in rows if r["stage"].startswith("two-epochs")}
    assert two["two-epochs.static.s1"]["tflop"] > next(r for r in rows if r["stage"] == "power.static.s4")["tflop"]
    trained = next(r for r in rows if r["stage"] == "trained-teacher.static.s1")   # its teacher scores every row
    assert trained["tokens"] > two["two-epochs.static.s1"]["tokens"]
    out = tmp_path / "reports" / "toy-study" / "runs"
    out.mkdir(parents=True)
    (out / "power.dynamic.s4.json").write_text(json.dumps({"run": "power.dynamic.s4", "condition": "power", "arm": "dynamic",
                                                           "seed": 4, "overrides": {}, "precision": "float32",
                                                           "val": {"nDCG@10": 0.7}, "test": {"nDCG@10": 0.7}}))
    left = [r["stage"] for r in plan(cfg, peak_gflops=50.0, study=True)["stages"] if not r["done"]]
    assert "power.dynamic.s4" not in left and "power.static.s4" in left   # exported: done, its folder here or not
    assert study.run_id("two-epochs", "static", 1) == "two-epochs.static.s1"
    # the one run with a validation score leads so far: teacher-noise's dynamic arm is power's
    assert "best-retriever.dynamic[p_max_len=256].s3" in left

    # a condition with its own warm start, every run exported: its stages are not needed again
    warm = {"warmup_ce.loss": "pointwise", "augment.calibration": "sigmoid"}
    for seed in range(1, 6):
        for arm in ("dynamic", "static"):
            rid = f"pointwise-warm.{arm}.s{seed}"
            (out / f"{rid}.json").write_text(json.dumps({"run": rid, "condition": "pointwise-warm", "arm": arm,
                                                         "seed": seed, "overrides": warm, "precision": "float32",
                                                         "val": {"nDCG@10": 0.6}, "test": {"nDCG@10": 0.6}}))
        left = [r["stage"] for r in plan(cfg, peak_gflops=50.0, study=True)["stages"] if not r["done"]]
        assert ("pointwise-warm: warmup_ce" in left) == (seed < 5)
    # two-epochs' dynamic run exported, its folder not here (a new machine): trained-teacher trains it again for
    # its re-ranker, until its own static run is exported too
    for rid, cond, arm, overrides in (("two-epochs.dynamic.s1", "two-epochs", "dynamic", {"joint.epochs": 2.0}),
                                      ("trained-teacher.static.s1", "trained-teacher", "static",
                                       {"joint.epochs": 2.0, "joint.teacher": "joint"})):
        (out / f"{rid}.json").write_text(json.dumps({"run": rid, "condition": cond, "arm": arm, "seed": 1,
                                                     "overrides": overrides, "precision": "float32",
                                                     "val": {"nDCG@10": 0.7}, "test": {"nDCG@10": 0.7}}))
        left = [r["stage"] for r in plan(cfg, peak_gflops=50.0, study=True)["stages"] if not r["done"]]
        assert "two-epochs.dynamic.s1" not in left
        assert any(n.startswith("trained-teacher: joint-dynamic-") and n.endswith("-s1") for n in left) == (
            cond == "two-epochs")
        assert any(n.startswith("trained-teacher: joint-dynamic-") and n.endswith("-s2") for n in left) is False


def test_the_study_plan_costs_the_best_retriever_at_the_leader_so_far_and_its_own_lengths(tmp_path, tiny_cache,
                                                                                           monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    cfg = load_config("toy", {"runtime.workdir": str(tmp_path / "runs"), "model.p_max_len": 8})
    out = tmp_path / "reports" / "toy-study" / "runs"
    out.mkdir(parents=True)
    for arm, val in (("dynamic", 0.8), ("static", 0.7)):   # two-epochs has 1 of its 5 seeds: not chosen yet
        rid = f"two-epochs.{arm}.s1"
        (out / f"{rid}.json").write_text(json.dumps({"run": rid, "condition": "two-epochs", "arm": arm, "seed": 1,
                                                     "overrides": {"joint.epochs": 2.0}, "precision": "float32",
                                                     "val": {"nDCG@10": val}, "test": {"nDCG@10": val}}))
    rows = {r["stage"]: r for r in plan(cfg, peak_gflops=50.0, study=True)["stages"]}
    best = [rows[f"best-retriever.dynamic[epochs=2.0-p_max_len=256].s{s}"] for s in (1, 2, 3)]
    assert not any(r["done"] for r in best) and "best-retriever: warmup_de" in rows
    # the same stage reading passages up to 256 tokens against the profile's 8: more tokens, measured on the data
    assert rows["best-retriever: warmup_de"]["tokens"] > 1.5 * rows["warmup_de"]["tokens"]





def test_a_peak_timed_on_a_busy_machine_comes_with_a_warning(tmp_path, tiny_cache, monkeypatch):
    import os

    from rqakit import plan as cost

    cfg = load_config("toy", {"runtime.workdir": str(tmp_path)})
    monkeypatch.setattr(cost, "matmul_peak_gflops", lambda *_, **__: 10.0)   # what a timing beside other jobs reads
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    busy = plan(cfg)
    assert busy["peak_from"] == "timed" and "load average 9.0" in busy["warning"] and "--peak-gflops" in busy["warning"]
    given = plan(cfg, peak_gflops=60.0)        # a reading of the idle machine: nothing to warn about
    assert given["peak_from"] == "given" and "warning" not in given
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert "warning" not in plan(cfg)


def test_a_profile_whose_data_and_backbone_are_not_here_is_planned_from_metadata(tmp_path, monkeypatch):
    """msmarco: no collection in the cache, no bert-base in the HF cache; the plan downloads
    nothing and counts from ir_datasets' metadata, every text at its max length, the known shape."""
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config("msmarco", {"runtime.workdir": str(tmp_path / "runs"), "runtime.device": "cpu"})
    out = plan(cfg, peak_gflops=50.0)
    counts = out["counts"]
    assert counts["from"].startswith("ir_datasets metadata") and counts["docs"] == 8_841_823
    assert counts["test"] == 6_980 and counts["train"] + counts["val"] == 502_939    # dev/small; train/judged
    assert counts["val"] == round(0.002 * 502_939)
    assert out["lengths"]["from"].startswith("max lengths") and out["lengths"]["passage"] == cfg.model.p_max_len
    assert out["backbone_shape_from"] in ("known shape", "config.json")
    assert all(r["tflop"] > 0 for r in out["stages"]) and not (tmp_path / "empty-cache" / "msmarco-passage").exists()


def test_metadata_counts_agree_with_the_data_where_both_are_here(tmp_path, scifact_home):
    from rqakit.plan import data_counts, metadata_counts

    cfg = load_config("scifact", {"runtime.workdir": str(tmp_path)})
    from_data, from_metadata = data_counts(Workspace(cfg)), metadata_counts(cfg)
    assert (from_metadata.docs, from_metadata.train, from_metadata.val, from_metadata.test) == \
        (from_data.docs, from_data.train, from_data.val, from_data.test)          # 5183, 728, 81, 300
    assert from_metadata.train_pairs == pytest.approx(from_data.train_pairs, rel=0.01)   # qrels spread evenly


def test_a_dataset_without_metadata_counts_is_a_clear_error():
    from rqakit.data.irds import metadata_counts
    from rqakit.errors import RqaError

    with pytest.raises(RqaError, match="unknown dataset 'beir/nope'"):
        metadata_counts("beir/nope")

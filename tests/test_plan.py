"""`rqakit plan`: FLOPs per token by hand, the stages of a report with their work, cached ones apart."""
from types import SimpleNamespace

import pytest

from rqakit.config import load_config
from rqakit.plan import Lengths, alone_split, estimate_seconds, flops_per_token, measured_rates, plan, stage_work
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


def test_measured_rates_divide_each_parts_flops_by_its_recorded_seconds():
    measured = {"a": ({"training steps": 100e9, "corpus encoding": 60e9}, {"training steps": 2.0, "corpus encoding": 1.0,
                                                                          "checkpoints": 0.3, "other": 0.3}),
                "b": ({"training steps": 50e9, "CE scoring": 0.0}, {"training steps": 1.0, "search": 0.4})}
    rates, overhead = measured_rates(measured)
    assert rates == pytest.approx({"training steps": 50.0, "corpus encoding": 60.0})
    assert overhead == pytest.approx((0.3 + 0.3 + 0.4) / (2.0 + 1.0 + 1.0))
    seconds = estimate_seconds({"training steps": 100e9, "CE scoring": 80e9}, rates, overhead, {"CE scoring": 40.0})
    assert seconds == pytest.approx((100 / 50 + 80 / 40) * (1 + overhead))


def test_a_stage_measured_on_a_shared_cpu_counts_as_the_share_of_its_cores_it_had():
    manifest = {"wall_time_s": 10.0, "time_split_s": {"CE scoring": 6.0, "training steps": 4.0}}
    assert alone_split(manifest) == {"CE scoring": 6.0, "training steps": 4.0}           # no share recorded: alone
    assert alone_split({**manifest, "cpu_share": 0.5}) == {"CE scoring": 3.0, "training steps": 2.0}


def test_the_plan_estimates_from_the_rates_finished_stages_recorded(tmp_path, tiny_cache):
    import json

    cfg = load_config("toy", {"runtime.workdir": str(tmp_path)})
    ws = Workspace(cfg)
    before = plan(cfg, peak_gflops=50.0)
    assert before["rates_gflops"] == {}
    warm = next(r for r in before["stages"] if r["stage"] == "warmup_de")
    flops = warm["tflop"] * 1e12
    folder = ws.folder("warmup_de")
    folder.mkdir(parents=True)
    split = {"training steps": 2.0, "corpus encoding": 1.0, "other": 0.5}
    (folder / "manifest.json").write_text(json.dumps({"wall_time_s": 3.5, "time_split_s": split}))
    after = plan(cfg, peak_gflops=50.0)
    assert set(after["rates_gflops"]) == {"training steps", "corpus encoding"} and after["rates_from"] == ["warmup_de"]
    assert after["overhead"] == pytest.approx(0.5 / 3.0, abs=1e-3)
    row = next(r for r in after["stages"] if r["stage"] == "warmup_de")
    assert row["done"] and row["measured_s"] == 4 and row["estimate_s"] == pytest.approx(3.5, abs=0.6)
    assert after["rates_gflops"]["corpus encoding"] > 0 and flops > 0


def test_the_plan_rates_a_stage_measured_on_a_shared_cpu_as_if_alone(tmp_path, tiny_cache):
    import json

    cfg = load_config("toy", {"runtime.workdir": str(tmp_path)})
    folder = Workspace(cfg).folder("warmup_de")
    folder.mkdir(parents=True)
    split = {"training steps": 2.0, "corpus encoding": 1.0}
    manifest = {"wall_time_s": 3.0, "time_split_s": split}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    alone = plan(cfg, peak_gflops=50.0)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "cpu_share": 0.5}))
    shared = plan(cfg, peak_gflops=50.0)   # the same seconds with half the CPU: twice the rate alone
    for part, rate in alone["rates_gflops"].items():
        assert shared["rates_gflops"][part] == pytest.approx(2 * rate, rel=0.02)
    row = next(r for r in shared["stages"] if r["stage"] == "warmup_de")
    assert row["cpu_share"] == 0.5 and row["measured_s"] == 3


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

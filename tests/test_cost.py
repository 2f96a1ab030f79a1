"""`rqakit plan`: FLOPs per token by hand, the stages of a report with their work, cached ones apart."""
from types import SimpleNamespace

import pytest

from rqakit.config import load_config
from rqakit.cost import Lengths, flops_per_token, plan, stage_work
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

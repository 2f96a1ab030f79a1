"""benchmarks/gpu_check.py on the CPU: the GPU check's code paths at tiny sizes, and its summary."""
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))


def is_skipped(value) -> bool:
    return isinstance(value, dict) and value.get("status") == "skipped" and bool(value.get("reason"))


def test_the_cpu_smoke_runs_every_part_and_marks_what_needs_cuda(gpu_check):
    summary = gpu_check.summary(gpu_check.PARTS, cpu_smoke=True)
    parts = summary["parts"]
    assert summary["mode"] == "cpu-smoke" and summary["ok"], parts
    assert set(parts) == set(gpu_check.PARTS) and all(p["status"] == "ok" for p in parts.values())

    assert parts["matmul"]["cpu_fp32_gflops"] > 0 and is_skipped(parts["matmul"]["bf16_tflops"])

    joint, sizes = parts["joint"], gpu_check.SMOKE
    assert joint["list_size"] == 8 and joint["gflop_per_step"] > 0
    for name, scaled in (("bf16", False), ("fp16_grad_scaler", True)):
        run = joint[name]
        assert run["grad_scaler"] is scaled
        assert len(run["losses"]) == sizes.steps and run["loss_finite"] and all(math.isfinite(v) for v in run["losses"])
        assert run["losses"][0] > 0 and run["step_s"] > 0
        assert is_skipped(run["peak_gpu_gib"])
        memory = run["memory"]
        assert memory["largest_micro_batch_queries"] == sizes.probe_cap and memory["capped"]
        assert memory["first_that_failed"] is None and is_skipped(memory["peak_gib_by_queries"])

    faiss = parts["faiss"]   # the kit's sharded search against one faiss-cpu index: the same top k
    assert faiss["kit_search_on"] == "cpu" and is_skipped(faiss["gpu"])
    assert faiss["topk_overlap_mean"] == 1.0 and faiss["identical_rankings"] == 1.0 and faiss["max_score_diff"] < 1e-4

    dist = parts["distributed"]   # two gloo processes, one DDP step of train()
    assert dist["world_size"] == 2 and dist["backend"] == "gloo" and is_skipped(dist["nccl"])
    assert dist["all_reduce_ok"] and dist["ddp_wrapped"] and dist["params_equal_across_ranks"] and dist["ddp_loss_finite"]

    for name in ("encode_passages", "score_pairs"):
        assert parts["encode"][name]["per_s"] > 0 and parts["encode"][name]["tokens_per_item"] > 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_every_part_is_skipped_with_its_reason(gpu_check):
    summary = gpu_check.summary(gpu_check.PARTS)
    assert summary["mode"] == "no-cuda" and summary["ok"]
    for part in summary["parts"].values():
        assert is_skipped(part) and "CUDA" in part["reason"]

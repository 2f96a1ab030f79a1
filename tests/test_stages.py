"""The stages on a small slice of the toy collection: cached, atomic, resumable, reproducible."""
import json

import pytest
import torch
from safetensors.torch import load_file

from rqakit.artifacts import is_complete, read_manifest, work_dir
from rqakit.config import load_config
from rqakit.mining import read_lists
from rqakit.stages import Workspace, augment, joint
from rqakit.training import TrainingStopped

SMALL = {"data.max_train_queries": 48, "joint.eval_every": 2, "joint.checkpoint_every": 1,
         "joint.batch_queries": 8, "joint.micro_batch_queries": 4, "joint.epochs": 0.5}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    cfg = load_config("toy", {**SMALL, "runtime.workdir": str(tmp_path_factory.mktemp("runs"))})
    return Workspace(cfg)


def weights(folder):
    return {**load_file(str(folder / "retriever" / "query_encoder" / "model.safetensors")),
            **{f"ce.{k}": v for k, v in load_file(str(folder / "reranker" / "model.safetensors")).items()}}


def test_augment_writes_both_list_kinds_with_the_positive_first(ws):
    folder = augment.run(ws, log=lambda *_: None)
    lists = read_lists(folder / "lists.parquet")
    assert set(lists.kind) == {"undenoised", "denoised"}
    assert all(len(d) == ws.cfg.augment.list_size and labels[0] == 1 and sum(labels) == 1
               for d, labels in zip(lists.doc_ids, lists.labels))
    positives = {q: set(ws.train.positives(q)) for q in ws.train.queries}
    assert all(not (set(d[1:]) & positives[q]) for q, d in zip(lists.query_id, lists.doc_ids))
    summary = json.loads((folder / "summary.json").read_text())
    quality = summary["denoising_quality"]  # rqakit/toy knows its unlabelled positives
    assert {"precision", "recall"} <= set(quality["dropped"]) and {"precision", "recall"} <= set(quality["pseudo"])
    assert summary["scoring"]["tokens_per_s"] > 0


def test_a_killed_joint_run_resumes_to_the_weights_of_an_uninterrupted_one(ws):
    quiet = lambda *_: None  # noqa: E731
    with pytest.raises(TrainingStopped):
        joint.run(ws, "dynamic", seed=5, stop_after=1, log=quiet)
    folder = ws.folder(joint.folder_name("dynamic", ws.cfg.joint.list_size, 5))
    assert not folder.exists() and any(work_dir(folder).glob("ckpt/step-*"))  # nothing looks complete
    resumed = joint.run(ws, "dynamic", seed=5, log=quiet)
    assert is_complete(resumed, read_manifest(resumed)["config_hash"])
    assert not work_dir(folder).exists()
    cached = joint.run(ws, "dynamic", seed=5, log=quiet)
    assert cached == resumed
    fresh = joint.run(ws, "dynamic", seed=5, force=True, log=quiet)
    a, b = weights(resumed), weights(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curves = json.loads((fresh / "curves.json").read_text())
    assert curves[0]["step"] == 0 and {"retriever_nDCG@10", "reranker_nDCG@10"} <= set(curves[-1])


def test_static_run_keeps_the_teacher_and_reports_only_the_retriever(ws):
    folder = joint.run(ws, "static", log=lambda *_: None)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"retriever"} and not (folder / "reranker").exists()
    assert all(0.0 <= v <= 1.0 for v in metrics["retriever"].values())


def test_a_killed_stage_leaves_only_a_temporary_folder_that_the_next_run_removes(tmp_path):
    import subprocess
    import sys

    from rqakit.artifacts import run_stage

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"stage.tmp-{dead.stdout.strip()}"
    stale.mkdir()
    (stale / "half-written").write_text("x")
    assert not is_complete(tmp_path / "stage", "h1")
    run_stage(tmp_path / "stage", "h1", lambda out: (out / "result.txt").write_text("ok") and None, log=lambda *_: None)
    assert not stale.exists() and is_complete(tmp_path / "stage", "h1")
    assert not is_complete(tmp_path / "stage", "h2")  # another config is not taken as done


@pytest.mark.parametrize("key, value", [("model.ce_max_len", 192), ("model.ce_pooling", "cls"),
                                        ("evaluate.rerank_depth", 50)])
def test_cross_encoder_settings_leave_retriever_stages_cached(key, value):
    before, after = Workspace(load_config("toy")), Workspace(load_config("toy", {key: value}))
    for stage in ("baselines", "warmup_de", "st_mnrl"):
        assert before.hash(stage) == after.hash(stage), stage
    assert before.hash("warmup_ce") != after.hash("warmup_ce")


def test_a_cached_stage_is_reported_once_per_process(tmp_path):
    """`rqakit stage joint` reaches `baselines` through every stage in between: one line, not six."""
    from rqakit.artifacts import run_stage

    logs = []
    for _ in range(3):
        run_stage(tmp_path / "baselines", "h1", lambda tmp: {}, log=logs.append)
    assert sum("[baselines] done" in line for line in logs) == 1
    assert sum("[baselines] cached" in line for line in logs) == 1

"""The stages on a small slice of the toy collection: cached, atomic, resumable, reproducible."""
import json

import numpy as np
import pytest
import torch
from conftest import SMALL_TOY as SMALL
from safetensors.torch import load_file

from rqakit.artifacts import is_complete, read_manifest, work_dir
from rqakit.config import load_config
from rqakit.mining import read_lists
from rqakit.stages import Workspace, ablations, augment, joint, teacher
from rqakit.stages.common import load_run, split_scorer
from rqakit.training import TrainingStopped


@pytest.fixture(scope="module")
def ws(toy_ws):
    """The session's small toy workspace (conftest.SMALL_TOY)."""
    return toy_ws


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
    calibration = json.loads((folder / "calibration.json").read_text())
    assert calibration["method"] == "platt" and calibration["prior"] == 0.2


def test_mining_in_chunks_gives_what_one_pass_gives(ws, monkeypatch):
    """Paper-scale splits are searched and scored a chunk at a time (memory); the candidates and
    the CE logits must be those of one pass over the whole split."""
    from rqakit.models import CrossEncoder
    from rqakit.stages import common

    wde, wce = ws.upstream("augment", lambda *_: None).values()
    ce = CrossEncoder.from_pretrained(wce / "model")

    def mine():
        candidates = augment.retrieve_candidates(ws, wde)
        return candidates, augment.score_window(ce, ws.train, candidates, ws.corpus, score_depth=4, batch_size=8,
                                                progress=False)

    whole = mine()
    monkeypatch.setattr(common, "SEARCH_CHUNK", 7)
    monkeypatch.setattr(augment, "SCORE_CHUNK", 11)
    chunked = mine()
    assert len(whole[0]) > 7 and sum(map(len, whole[1].values())) > 11   # several chunks of each
    assert chunked[0] == whole[0]
    assert chunked[1].keys() == whole[1].keys()
    for qid, scores in whole[1].items():
        assert chunked[1][qid] == pytest.approx(scores, abs=1e-5), qid


def test_joint_lists_fetch_their_passages_only_when_a_step_reads_them(ws):
    """A training list holds ids until training reads its step; then its passages, in list order."""
    from types import SimpleNamespace

    from rqakit.mining import training_lists
    from rqakit.stages.common import PlannedSteps

    lists = training_lists(augment.run(ws, log=lambda *_: None) / "lists.parquet", list_size=ws.cfg.joint.list_size)
    fetched = []
    corpus = SimpleNamespace(get_many=lambda ids: fetched.append(list(ids)) or ws.corpus.get_many(ids))
    examples = joint.ListExamples(SimpleNamespace(train=ws.train, corpus=corpus), lists, lists.ce_scores)
    steps = PlannedSteps(examples, [[[0, 1]], [[2]]])
    assert len(examples) == len(lists) and len(steps) == 2 and fetched == []
    (first, second), = steps[0]
    assert fetched == [lists.docs(0), lists.docs(1)]
    assert [d.doc_id for d in second.docs] == lists.docs(1)
    np.testing.assert_array_equal(second.teacher_scores, lists.ce_scores[1])   # NaN where augment scored none
    assert first.query == ws.train.queries[lists.query_ids[0]]


def test_a_killed_joint_run_resumes_to_the_weights_of_an_uninterrupted_one(ws):
    quiet = lambda *_: None  # noqa: E731
    first = 5   # a seed no other test trains, made the first seed so that the run draws the curves
    ws = Workspace(load_config("toy", {**SMALL, "runtime.workdir": ws.config.runtime.workdir, "ablations.seeds": [first]}))
    with pytest.raises(TrainingStopped):
        joint.run(ws, "dynamic", seed=first, stop_after=1, log=quiet)
    folder = ws.folder(joint.folder_name("dynamic", ws.cfg.joint.list_size, first))
    assert not folder.exists() and any(work_dir(folder).glob("ckpt/step-*"))  # nothing looks complete
    resumed = joint.run(ws, "dynamic", seed=first, log=quiet)
    assert is_complete(resumed, read_manifest(resumed)["config_hash"])
    assert not work_dir(folder).exists()
    cached = joint.run(ws, "dynamic", seed=first, log=quiet)
    assert cached == resumed
    fresh = joint.run(ws, "dynamic", seed=first, force=True, log=quiet)
    a, b = weights(resumed), weights(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curves = json.loads((fresh / "curves.json").read_text())
    assert curves[0]["step"] == 0 and {"retriever_nDCG@10", "reranker_nDCG@10"} <= set(curves[-1])
    assert set(json.loads((fresh / "metrics.json").read_text())) == {"retriever", "reranker", "reranker@bm25"}


@pytest.mark.parametrize("variant, list_size, seed, curves, rerank, rerank_bm25", [
    ("dynamic", 4, 1, True, True, True), ("static", 4, 1, True, False, False), ("dynamic", 4, 2, False, True, True),
    ("static", 4, 3, False, False, False), ("pointwise", 4, 1, False, False, False),
    ("no-denoise", 4, 1, False, False, False), ("dynamic", 2, 1, False, True, False)])
def test_a_joint_run_evaluates_what_the_report_reads_of_it(variant, list_size, seed, curves, rerank, rerank_bm25):
    cfg = load_config("toy")  # joint.list_size 4, ablations.seeds [1, 2, 3]
    expected = {"curves": curves, "rerank": rerank, "rerank_bm25": rerank_bm25}
    assert joint.report_reads(cfg, variant, list_size, seed) == expected
    assert not joint.report_reads(load_config("toy", {"joint.eval_every": 0}), variant, list_size, seed)["curves"]


def test_curves_and_test_re_ranking_leave_training_untouched(ws):
    """The run that draws curves and one that does not (another first seed) train the same weights."""
    quiet = lambda *_: None  # noqa: E731
    drawn = joint.run(ws, "dynamic", seed=ws.cfg.ablations.seeds[0], log=quiet)
    other = Workspace(load_config("toy", {**SMALL, "runtime.workdir": ws.config.runtime.workdir,
                                          "ablations.seeds": [7, 1]}))
    undrawn = joint.run(other, "dynamic", seed=ws.cfg.ablations.seeds[0], log=quiet)
    assert undrawn != drawn and (drawn / "curves.json").exists() and not (undrawn / "curves.json").exists()
    a, b = weights(drawn), weights(undrawn)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((undrawn / "metrics.json").read_text()) == json.loads((drawn / "metrics.json").read_text())


def test_static_run_keeps_the_teacher_and_reports_only_the_retriever(ws):
    folder = joint.run(ws, "static", log=lambda *_: None)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"retriever"} and not (folder / "reranker").exists()
    assert all(0.0 <= v <= 1.0 for v in metrics["retriever"].values())


def test_a_static_run_on_the_trained_teacher_distils_from_its_dynamic_pair_s_last_re_ranker(ws, monkeypatch):
    """joint.teacher: joint: the frozen teacher is the re-ranker the dynamic run of the same settings
    and seed saved (trained once, for both), and it scores every list row itself, none of augment's
    warm scores kept."""
    from rqakit.models import CrossEncoder

    quiet = lambda *_: None  # noqa: E731
    seen = {}
    real = joint.teacher_scores

    def spy(lists, ws_, ce, batch_size):
        seen["unscored"] = bool(np.isnan(lists.ce_scores).all())
        seen["teacher"] = {k: v.clone() for k, v in ce.state_dict().items()}
        return real(lists, ws_, ce, batch_size)

    monkeypatch.setattr(joint, "teacher_scores", spy)
    trained = Workspace(load_config("toy", {**SMALL, "runtime.workdir": ws.config.runtime.workdir,
                                            "joint.teacher": "joint"}))
    static = joint.run(trained, "static", seed=2, log=quiet)
    pair = joint.run(ws, "dynamic", seed=2, log=quiet)     # cached: the run the teacher came from
    written = lambda folder: (folder / "manifest.json").stat().st_mtime_ns  # noqa: E731  (finished_at is to the second)
    assert written(pair) < written(static)                 # trained first, for the static run, and not again
    last = CrossEncoder.from_pretrained(pair / "reranker").state_dict()
    warm = CrossEncoder.from_pretrained(ws.folder("warmup_ce") / "model").state_dict()
    assert seen["unscored"] and all(torch.equal(seen["teacher"][k], v) for k, v in last.items())
    assert not all(torch.equal(warm[k], v) for k, v in last.items())   # it trained: not the warm one
    assert static != joint.run(ws, "static", seed=2, log=quiet)


def test_joint_clip_per_tower_reaches_the_training_loop(ws, monkeypatch):
    from rqakit import training

    seen = []
    real = training.clip_gradients
    monkeypatch.setattr(training, "clip_gradients",
                        lambda model, trainable, optim: seen.append(optim.clip_per_tower) or real(model, trainable, optim))
    apart = Workspace(load_config("toy", {**SMALL, "runtime.workdir": ws.config.runtime.workdir,
                                          "joint.clip_per_tower": True}))
    with pytest.raises(TrainingStopped):
        joint.run(apart, "dynamic", seed=5, stop_after=1, log=lambda *_: None)
    assert seen[-1] is True and seen.count(True) == 1   # the joint step; a warm-up stage built first clips globally


def test_a_killed_stage_leaves_only_a_temporary_folder_that_the_next_run_removes(tmp_path):
    import subprocess
    import sys

    from rqakit.artifacts import run_stage

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".stage.tmp-{dead.stdout.strip()}"
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


def test_another_config_keeps_the_results_of_the_first_and_resumes_only_its_own_work(ws):
    """Stage folders are keyed by config hash: a changed lr trains afresh beside the old run
    (never resuming the old run's checkpoints), and `rqakit runs --clean` removes the old one."""
    from rqakit.stages import stage_results

    quiet = lambda *_: None  # noqa: E731
    first = joint.run(ws, "dynamic", seed=9, log=quiet)
    other = Workspace(load_config("toy", {**SMALL, "runtime.workdir": ws.config.runtime.workdir, "joint.lr": 5e-3}))
    messages = []
    with pytest.raises(TrainingStopped):
        joint.run(other, "dynamic", seed=9, stop_after=1, log=messages.append)
    assert not any("resumed" in m for m in messages)                  # the first run's work is not this config's
    second = other.folder(joint.folder_name("dynamic", other.cfg.joint.list_size, 9))
    assert second.parent == first.parent and second != first and first.exists()
    assert any(work_dir(second).glob("ckpt/step-*"))
    messages.clear()
    with pytest.raises(TrainingStopped):  # --force clears the work folder: training starts again at step 0
        joint.run(other, "dynamic", seed=9, force=True, stop_after=1, log=messages.append)
    assert not any("resumed" in m for m in messages)
    with pytest.raises(TrainingStopped):  # without --force the same config resumes its own checkpoint
        joint.run(other, "dynamic", seed=9, stop_after=2, log=messages.append)
    assert any("resumed from step 1" in m for m in messages)
    listing = stage_results(other.config)
    mine = [r for r in listing["folders"] if r["stage"] == first.parent.name]
    assert {(r["hash"], r["kind"], r["current"]) for r in mine} == {(first.name, "result", False),
                                                                    (second.name, "work", True)}
    cleaned = stage_results(other.config, clean=True)
    assert str(first) in cleaned["removed"] and not first.exists() and work_dir(second).exists()
    assert ws.folder("augment").exists()  # shared upstream results are current for both configs


@pytest.mark.parametrize("key, value, first_changed", [
    ("data.answer_free_negatives", False, "warmup_de"), ("evaluate.relevance", "qrels", "baselines"),
    ("model.ce_query_max_len", 30, "warmup_ce"), ("warmup_ce.loss", "pointwise", "warmup_ce"),
    ("warmup_ce.schedule", "constant", "warmup_ce")])
def test_a_fidelity_switch_reruns_the_first_stage_that_reads_it_and_those_after(key, value, first_changed):
    default, changed = Workspace(load_config("toy")), Workspace(load_config("toy", {key: value}))
    stages = ("baselines", "warmup_de", "warmup_ce", "augment", "joint")
    first = stages.index(first_changed)
    assert all(default.hash(s) == changed.hash(s) for s in stages[:first])
    assert all(default.hash(s) != changed.hash(s) for s in stages[first:])


def test_table4_runs_at_its_own_list_size_beside_the_main_runs():
    def plan(**overrides):
        cfg = load_config("toy", {"ablations.seeds": [1, 2], "ablations.variant_seeds": [1], **overrides})
        return sorted((r["variant"], r["list_size"], r["seed"]) for r in ablations.planned_runs(Workspace(cfg)))

    # The paper's MS MARCO shape: main runs at m = 128, Table 4 at 8, Figure 4 over 8..64.
    marco = plan(**{"joint.list_size": 128, "augment.list_size": 128, "ablations.list_size": 8,
                    "ablations.list_sizes": [8, 16]})
    assert marco == sorted([("dynamic", 128, 1), ("dynamic", 128, 2), ("static", 128, 1), ("static", 128, 2),
                            ("dynamic", 8, 1), ("dynamic", 8, 2), ("static", 8, 1), ("static", 8, 2),
                            ("pointwise", 8, 1), ("no-denoise", 8, 1), ("dynamic", 16, 1)])
    # null: Table 4 at joint.list_size, as before (toy: m = 4, list sizes 2 and 4).
    assert plan() == sorted([("dynamic", 4, 1), ("dynamic", 4, 2), ("static", 4, 1), ("static", 4, 2),
                             ("pointwise", 4, 1), ("no-denoise", 4, 1), ("dynamic", 2, 1)])


@pytest.mark.parametrize("n_reference, n_lists, batch, epochs, expected_steps", [
    (96, 48, 8, 0.5, 6), (96, 48, 8, 1.0, 12), (1000, 517, 96, 2.0, 20), (13, 7, 16, 1.0, 1)])
def test_matched_epochs_give_the_reference_run_s_step_count(n_reference, n_lists, batch, epochs, expected_steps):
    from rqakit.training import make_plan

    reference = make_plan(n_reference, batch_size=min(batch, n_reference), micro_batch_size=1, epochs=epochs, seed=0)
    matched = joint.matched_epochs(n_reference, n_lists, batch, epochs)
    plan = make_plan(n_lists, batch_size=min(batch, n_lists), micro_batch_size=1, epochs=matched, seed=0)
    assert len(reference) == len(plan) == expected_steps


def test_no_denoise_trains_as_many_steps_as_the_run_on_all_lists_unless_told_otherwise(ws):
    quiet = lambda *_: None  # noqa: E731
    reference = read_manifest(joint.run(ws, "static", seed=1, log=quiet))     # all lists, same m, same epochs
    no_denoise = read_manifest(joint.run(ws, "no-denoise", seed=1, log=quiet))
    assert no_denoise["lists"] * 2 == reference["lists"] and no_denoise["steps"] == reference["steps"]
    halved = Workspace(load_config("toy", {**SMALL, "runtime.workdir": str(ws.root.parent),
                                           "ablations.no_denoise_budget": "epochs"}))
    assert halved.hash("augment") == ws.hash("augment")                    # the same lists, reused from the cache
    epochs = read_manifest(joint.run(halved, "no-denoise", seed=1, log=quiet))
    assert epochs["steps"] == reference["steps"] // 2 and epochs["epochs"] == ws.cfg.joint.epochs


def test_a_cached_stage_is_reported_once_per_process(tmp_path):
    """`rqakit stage joint` reaches `baselines` through every stage in between: one line, not six."""
    from rqakit.artifacts import run_stage

    logs = []
    for _ in range(3):
        run_stage(tmp_path / "baselines" / "h1", "h1", lambda tmp: {}, log=logs.append)
    assert sum("[baselines] done" in line for line in logs) == 1
    assert sum("[baselines] cached" in line for line in logs) == 1


def test_the_warm_reranker_head_follows_the_stage_seed_not_the_callers_rng(tmp_path):
    """The same stage hash must give the same model whether `rqakit stage` or a notebook runs it."""
    from rqakit.stages.warmup_ce import build_cross_encoder

    ws = Workspace(load_config("toy", {"runtime.workdir": str(tmp_path)}))
    torch.manual_seed(5)
    a = build_cross_encoder(ws, 1).score_head.weight
    after = torch.rand(1)
    torch.manual_seed(6)
    b = build_cross_encoder(ws, 1).score_head.weight
    torch.manual_seed(5)
    assert torch.equal(torch.rand(1), after)                 # the caller's RNG stream is left as it was
    assert torch.equal(a, b)
    assert not torch.equal(a, build_cross_encoder(ws, 2).score_head.weight)


def test_the_teacher_check_sets_the_warm_reranker_against_each_retriever_on_validation(ws):
    logged = []
    augment.run(ws, log=logged.append)                      # runs the check before its scores are used
    result = teacher.check(ws, log=logged.append)
    measure, score = result["measure"], split_scorer(ws, ws.val)
    assert [r["candidates"].split()[0] for r in result["rows"]] == ["bm25", "warmup_de"]
    for row, (stage, run_name) in zip(result["rows"], [("baselines", "bm25.val"), ("warmup_de", "warmup_de.val")]):
        assert row["retriever"] == pytest.approx(score(load_run(ws.folder(stage), run_name), [measure])[measure])
    assert result["leads"] == all(r["teacher"] > r["retriever"] for r in result["rows"])
    assert any("does not lead" in str(m) for m in logged) == (not result["leads"])


def test_the_teacher_line_gives_the_numbers_and_where_it_lags_the_remedy():
    rows = [{"candidates": "bm25 top 30", "retriever": 0.362, "teacher": 0.163},
            {"candidates": "warmup_de top 30", "retriever": 0.339, "teacher": 0.401}]
    lags = teacher.verdict_line({"measure": "nDCG@10", "split": "validation", "queries": 40, "rows": rows, "leads": False})
    assert "does not lead" in lags and "0.163 on bm25 top 30 against the retriever's 0.362" in lags
    assert "warmup_ce.lead_epochs=N" in lags
    rows[0]["teacher"] = 0.5
    leads = teacher.verdict_line({"measure": "nDCG@10", "split": "validation", "queries": 40, "rows": rows, "leads": True})
    assert leads.startswith("the warm re-ranker leads") and "lead_epochs" not in leads


def test_a_reranker_that_does_not_lead_trains_more_epochs_up_to_the_budget(toy_ws, tmp_path):
    """warmup_ce.lead_epochs: with a learning rate too small to move it, the re-ranker never comes to
    lead, so every allowed epoch is trained and every check is recorded; the switch enters the hash."""
    from rqakit.stages import warmup_ce

    overrides = {**SMALL, "runtime.workdir": str(tmp_path), "warmup_ce.lr": 1e-12, "warmup_ce.epochs": 0.25}
    plain = Workspace(load_config("toy", overrides))
    ws = Workspace(load_config("toy", {**overrides, "warmup_ce.lead_epochs": 2}))
    assert ws.hash("warmup_ce") != plain.hash("warmup_ce") and ws.hash("warmup_de") == plain.hash("warmup_de")
    manifest = read_manifest(warmup_ce.run(ws, log=lambda *_: None))
    checks = manifest["lead_checks"]
    assert [c["leads"] for c in checks] == [False, False, False] and manifest["lead_epochs_used"] == 2
    per_epoch = -(-len(ws.train.queries) // ws.cfg.warmup_ce.batch_queries)        # one epoch's steps
    first = -(-round(0.25 * len(ws.train.queries)) // ws.cfg.warmup_ce.batch_queries)
    assert manifest["steps"] == pytest.approx(first + 2 * per_epoch, abs=2)
    assert checks[0]["rows"][0]["retriever"] == checks[-1]["rows"][0]["retriever"]   # the students stay as they were

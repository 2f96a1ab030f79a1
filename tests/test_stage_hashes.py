"""Each stage's hash covers exactly the config fields the stage reads (rqakit.stages.workspace)."""
import pytest

from rqakit import env, runtime
from rqakit.config import RecordingConfig, load_config
from rqakit.stages import Workspace, augment, baselines, joint, st_mnrl, warmup_ce, warmup_de
from rqakit.stages.workspace import NEUTRAL, covered, expand, stage_module

SMALL = {"data.max_train_queries": 24, "warmup_de.epochs": 1, "warmup_ce.epochs": 1, "joint.epochs": 0.25,
         "joint.eval_every": 1, "st_mnrl.epochs": 1}
STAGES = [("baselines", baselines.run), ("warmup_de", warmup_de.run), ("warmup_ce", warmup_ce.run),
          ("augment", augment.run), ("joint", lambda ws, log: joint.run(ws, "dynamic", log=log)),
          ("st_mnrl", st_mnrl.run)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_cache):
    """{stage: fields read while it ran}: each stage runs once, upstream stages already cached."""
    cfg = load_config("toy", {**SMALL, "runtime.workdir": str(tmp_path_factory.mktemp("runs"))})
    reads = {}
    for name, run in STAGES:
        view = RecordingConfig(cfg)
        run(Workspace(view), log=lambda *_: None)
        reads[name] = view.reads
    return cfg, reads


@pytest.mark.parametrize("stage", [name for name, _ in STAGES])
def test_every_field_a_stage_reads_is_in_its_hash(recorded, stage):
    cfg, reads = recorded
    uncovered = reads[stage] - covered(cfg, stage) - expand(cfg, NEUTRAL)
    assert not uncovered, f"{stage} reads {sorted(uncovered)} but its hash does not cover them"


@pytest.mark.parametrize("stage", [name for name, _ in STAGES])
def test_a_stage_hash_covers_no_field_the_stage_leaves_unread(recorded, stage):
    cfg, reads = recorded
    declared = expand(cfg, stage_module(stage).READS) - expand(cfg, NEUTRAL)
    assert declared <= reads[stage], f"{stage} declares {sorted(declared - reads[stage])} but never reads them"


@pytest.mark.parametrize("key, value, changed", [
    ("augment.retrieve_depth", 120, {"augment", "joint"}),
    ("warmup_ce.depth", 20, {"warmup_ce", "augment", "joint"}),
    ("warmup_de.bm25_depth", 20, {"warmup_de", "warmup_ce", "augment", "joint", "st_mnrl"}),
    ("joint.seed", 7, set()),            # a joint run names its seed; the warm-up stages keep theirs
    ("evaluate.batch_size", 8, set()),   # speed only
    ("joint.checkpoint_every", 3, set()),
])
def test_a_changed_field_reruns_exactly_the_stages_that_read_it(key, value, changed):
    before, after = Workspace(load_config("toy")), Workspace(load_config("toy", {key: value}))
    rerun = {s for s in ("baselines", "warmup_de", "warmup_ce", "augment", "st_mnrl") if before.hash(s) != after.hash(s)}
    if before.folder("joint-dynamic-m4-s1") != after.folder("joint-dynamic-m4-s1"):
        rerun.add("joint")
    assert rerun == changed


def test_the_compute_dtype_keeps_stage_folders_apart(monkeypatch):
    """A stage built in bf16 is never served to an fp32 run: on a bf16 CPU the default precision
    and runtime.precision=fp32 hash every stage apart; an AVX2 CPU computes in fp32, as fp32 does."""
    stages = ("baselines", "warmup_de", "warmup_ce", "augment", "st_mnrl")
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    fp32 = Workspace(load_config("toy", {"runtime.precision": "fp32"}))
    bf16 = Workspace(load_config("toy", {"runtime.precision": "auto"}))
    assert (bf16.compute_dtype, fp32.compute_dtype) == ("bfloat16", "float32")
    assert all(bf16.hash(s) != fp32.hash(s) for s in stages)
    assert bf16.folder("joint-dynamic-m4-s1") != fp32.folder("joint-dynamic-m4-s1")
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    avx2 = Workspace(load_config("toy", {"runtime.precision": "auto"}))
    assert avx2.compute_dtype == "float32" and all(avx2.hash(s) == fp32.hash(s) for s in stages)


# Stage folder names: scifact's as in its committed report (bf16), the toy's in fp32 with portable
# kernels (its committed report) and native ones (tests). A switch added at its default, or a
# reorganisation of the code, must leave every one of them in place.
COMMITTED = {
    ("scifact", "bfloat16", "native"): {"baselines": "b791cf9c5b85", "warmup_de": "4a26ecac701b", "warmup_ce": "17896746bf9c",
                              "augment": "bf7cf11033c2", "st_mnrl": "9bf243938231",
                              "joint-dynamic-m8-s1": "1ab607ba40ec", "joint-dynamic-m8-s2": "616e8d8ce952",
                              "joint-dynamic-m8-s3": "29a9e75568b5", "joint-static-m8-s1": "35cba2438be3",
                              "joint-static-m8-s2": "fad99653f6cf", "joint-static-m8-s3": "3e96d1a529d4",
                              "joint-pointwise-m8-s1": "b99535d40731", "joint-no-denoise-m8-s1": "b342f1374c62",
                              "joint-dynamic-m2-s1": "8d7dd49eab05", "joint-dynamic-m4-s1": "d43dae2c62d3"},
    ("toy", "float32", "portable"): {"baselines": "0fb2faeb5704", "st_mnrl": "ee4c177fc2c3", "warmup_de": "f15b4eaaf08a",
                                     "warmup_ce": "af86001be9a4", "augment": "110c23954634",
                                     "joint-dynamic-m4-s1": "f81886fd4994", "joint-dynamic-m4-s2": "e12a22b7fdbf",
                                     "joint-dynamic-m4-s3": "d45b2f289802", "joint-static-m4-s1": "2ca8c36b8a1b",
                                     "joint-static-m4-s2": "a57ea7b964a5", "joint-static-m4-s3": "16ca2266bd66",
                                     "joint-pointwise-m4-s1": "e18747bb2219", "joint-no-denoise-m4-s1": "8b7fc7729c40",
                                     "joint-dynamic-m2-s1": "581e72e1a482"},
    ("toy", "float32", "native"): {"baselines": "6befb49cbeff", "st_mnrl": "dc22b7ec828e", "warmup_de": "ec649516fb82",
                         "warmup_ce": "cac7784d1e9e", "augment": "115ee879a892", "joint-dynamic-m4-s1": "5aeab1bb6537",
                         "joint-dynamic-m4-s2": "7167d91cf5c2", "joint-dynamic-m4-s3": "cfad8f434761",
                         "joint-static-m4-s1": "fa0c3566449e", "joint-static-m4-s2": "57d39bc5f266",
                         "joint-static-m4-s3": "32f68a18e48f", "joint-pointwise-m4-s1": "0edb67c9f159",
                         "joint-no-denoise-m4-s1": "05332bcaeec2", "joint-dynamic-m2-s1": "1ad01ff61bab"},
}


@pytest.mark.parametrize("profile, dtype, kernels", sorted(COMMITTED))
def test_stage_folders_keep_their_names(monkeypatch, profile, dtype, kernels):
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: dtype == "bfloat16")
    monkeypatch.setattr(env, "portable_kernels_active", lambda: kernels == "portable")
    ws = Workspace(load_config(profile))
    assert {name: ws.folder(name).name for name in COMMITTED[profile, dtype, kernels]} == COMMITTED[profile, dtype, kernels]


@pytest.mark.parametrize("key, value", [("joint.ce_lr", 5e-6), ("joint.ce_warmup_ratio", 0.2),
                                        ("joint.teacher_temperature", 2.0), ("joint.clip_per_tower", True)])
def test_a_study_switch_enters_the_joint_hash_only_when_set(key, value):
    default, switched = Workspace(load_config("toy")), Workspace(load_config("toy", {key: value}))
    assert default.folder("joint-dynamic-m4-s1") != switched.folder("joint-dynamic-m4-s1")
    assert all(default.hash(s) == switched.hash(s) for s in ("baselines", "warmup_de", "warmup_ce", "augment"))


def test_a_static_run_on_the_trained_teacher_hashes_apart_and_names_its_teacher_run(monkeypatch):
    """joint.teacher: joint puts the dynamic run's last re-ranker in the warm one's place: the static
    folder moves, and moves again when its teacher run is another, while the dynamic variant
    refuses the switch."""
    from rqakit.errors import RqaError

    warm, trained = Workspace(load_config("toy")), Workspace(load_config("toy", {"joint.teacher": "joint"}))
    assert warm.folder("joint-static-m4-s1") != trained.folder("joint-static-m4-s1")
    curves = {"curves": True, "rerank": False, "rerank_bm25": False}
    teacher_ws, name, reads = joint.teacher_run(trained, joint.variant_config(trained, "static", None, 2), curves)
    assert (name, reads) == ("joint-dynamic-m4-s2", curves)   # the run the study's static arm pairs with
    assert joint.stage_hash(teacher_ws, name, reads) == joint.stage_hash(warm, name, reads)
    before = joint.stage_hash(trained, "joint-static-m4-s1", curves)
    real = joint.teacher_run
    monkeypatch.setattr(joint, "teacher_run", lambda ws, j, ev: (*real(ws, j, ev)[:2], {**curves, "curves": False}))
    assert joint.stage_hash(trained, "joint-static-m4-s1", curves) != before
    with pytest.raises(RqaError, match="joint.teacher"):
        trained.folder("joint-dynamic-m4-s1")

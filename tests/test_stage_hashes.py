"""Each stage's hash covers exactly the config fields the stage reads (rqakit.stages.workspace)."""
import pytest

from rqakit import runtime
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


def test_the_old_hand_kept_lists_miss_what_the_stages_read(recorded):
    """The section lists that hashed the stages before: baselines read the warm-up depths, the
    warm-up stages the joint seed, and none of that was hashed."""
    cfg, reads = recorded
    old = {"baselines": ("data", "model", "evaluate"), "warmup_de": ("data", "model", "evaluate", "warmup_de"),
           "warmup_ce": ("data", "model", "evaluate", "warmup_de", "warmup_ce")}
    old_reads = {"baselines": {"warmup_de.bm25_depth", "warmup_ce.depth"},
                 "warmup_de": {"joint.seed", "augment.retrieve_depth", "warmup_ce.depth"}, "warmup_ce": {"joint.seed"}}
    for stage, sections in old.items():
        assert old_reads[stage] - expand(cfg, sections)  # what the old code read, outside the old hash
        assert not {k for k in reads[stage] if k.startswith("joint.")}  # today no warm-up stage reads joint


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
    bf16 = Workspace(load_config("toy"))
    assert (bf16.compute_dtype, fp32.compute_dtype) == ("bfloat16", "float32")
    assert all(bf16.hash(s) != fp32.hash(s) for s in stages)
    assert bf16.folder("joint-dynamic-m4-s1") != fp32.folder("joint-dynamic-m4-s1")
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    avx2 = Workspace(load_config("toy"))
    assert avx2.compute_dtype == "float32" and all(avx2.hash(s) == fp32.hash(s) for s in stages)

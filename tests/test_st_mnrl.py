"""Stage st_mnrl: the sentence-transformers MNRL fine-tune, end to end on the toy profile."""

import json
import math

import ir_measures
import pytest
import torch
import torch.nn.functional as F

from rqakit.artifacts import is_complete
from rqakit.config import load_config
from rqakit.data.collection import Doc
from rqakit.objectives import ListExample
from rqakit.runs import read_trec_run
from rqakit.stages import st_mnrl
from rqakit.stages.warmup_de import bm25_training_pairs
from rqakit.stages.workspace import Workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_cache):
    # 60 training queries keep the run short; everything else is the toy profile.
    cfg = load_config("toy", {"runtime.workdir": str(tmp_path_factory.mktemp("runs")), "data.max_train_queries": 60})
    return Workspace(cfg)


@pytest.fixture(scope="module")
def stage(workspace):
    lines = []
    folder = st_mnrl.run(workspace, log=lines.append)
    return folder, lines


def test_folder_is_complete(workspace, stage):
    folder, _ = stage
    assert is_complete(folder, workspace.hash("st_mnrl"))
    for name in ("config.json", "history.json", "metrics.json", "runs/st-mnrl.val.trec", "runs/st-mnrl.test.trec",
                 "model/modules.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.parent.glob("st_mnrl.tmp-*"))


def test_metrics_are_ir_measures_of_the_test_run(workspace, stage):
    folder, _ = stage
    metrics = json.loads((folder / "metrics.json").read_text())["st-mnrl"]
    run = read_trec_run(folder / "runs" / "st-mnrl.test.trec")
    qrels = [ir_measures.Qrel(q, d, r) for q, docs in workspace.test.qrels.items() for d, r in docs.items()]
    expected = ir_measures.calc_aggregate([ir_measures.parse_measure(m) for m in workspace.cfg.evaluate.measures],
                                          qrels, run)
    assert set(metrics) == set(workspace.cfg.evaluate.measures)
    for name, value in metrics.items():
        assert math.isfinite(value)
        assert value == pytest.approx(expected[ir_measures.parse_measure(name)], abs=1e-9)


def test_runs_rank_the_whole_depth_for_every_query(workspace, stage):
    folder, _ = stage
    depth = min(workspace.cfg.evaluate.retrieve_depth, len(workspace.corpus))
    for split_name, split in (("val", workspace.val), ("test", workspace.test)):
        run = read_trec_run(folder / "runs" / f"st-mnrl.{split_name}.trec")
        assert set(run) == set(split.queries)
        assert {len(docs) for docs in run.values()} == {depth}


def test_the_recipe_runs_over_the_warmup_de_triples(workspace, stage):
    folder, _ = stage
    cfg = workspace.cfg
    pairs = bm25_training_pairs(workspace, workspace.folder("baselines"))
    manifest = json.loads((folder / "manifest.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    assert manifest["train_examples"] == len(pairs)
    recipe = st_mnrl.settings(cfg)
    per_epoch = math.ceil(len(pairs) / recipe["batch_size"])   # the last batch kept
    assert len(history) == round(per_epoch * recipe["epochs"])
    assert all(math.isfinite(row["loss"]) for row in history)
    assert history[-1]["lr"] == 0.0                            # linear decay to 0 at the end


def test_saved_model_is_trained(workspace, stage):
    folder, _ = stage
    trained = st_mnrl.load_sentence_transformer(str(folder / "model"), max_length=256)
    start = st_mnrl.load_sentence_transformer(workspace.cfg.model.backbone, max_length=256)
    moved = [not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values())]
    assert len(moved) > 0 and any(moved)


def test_second_call_is_cached(workspace, stage):
    folder, _ = stage
    before = (folder / "manifest.json").read_text()
    lines = []
    assert st_mnrl.run(workspace, log=lines.append) == folder
    assert any("[st_mnrl] cached" in line for line in lines)
    assert (folder / "manifest.json").read_text() == before


def test_recipe_is_the_config_section_and_changes_the_hash(workspace):
    recipe = st_mnrl.settings(workspace.cfg)
    assert recipe["batch_size"] == 16 and recipe["max_length"] == 256 and recipe["scale"] == 20.0
    cfg = load_config("toy", {"runtime.workdir": workspace.cfg.runtime.workdir, "st_mnrl.batch_size": 8})
    assert st_mnrl.settings(cfg) == {**recipe, "batch_size": 8}
    assert Workspace(cfg).hash("st_mnrl") != Workspace(load_config("toy")).hash("st_mnrl")


def test_objective_is_mnrl_with_the_positive_column_first(tiny_cache):
    """-log softmax(20 cos(q_i, [positives; negatives]))[i], averaged over the batch, by hand."""
    model = st_mnrl.load_sentence_transformer("tiny", max_length=64).eval()
    objective = st_mnrl.MNRLObjective(model, lambda doc: f"{doc.title} {doc.text}")
    examples = [
        ListExample("dna structure", [Doc("p1", "dna", "a double helix"), Doc("n1", "rna", "a single strand")]),
        ListExample("cat diet", [Doc("p2", "cats", "eat mice and fish"), Doc("n2", "dogs", "eat meat")]),
        ListExample("rain", [Doc("p3", "weather", "rain falls from clouds"), Doc("n3", "sun", "is hot")]),
    ]
    with torch.no_grad():
        loss = objective(objective.collate(examples))["loss"]
        embed = lambda texts: model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)  # noqa: E731
        q = embed([e.query for e in examples])                                                   # (3, d)
        p = embed([f"{d.title} {d.text}" for j in (0, 1) for e in examples for d in [e.docs[j]]])  # (6, d)
        expected = F.cross_entropy(20.0 * q @ p.T, torch.arange(3))
        swapped = F.cross_entropy(20.0 * q @ p.T, torch.arange(3, 6))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(loss) - float(swapped)) > 1e-3

"""The paper profiles (msmarco, nq) rehearsed at small scale, with the profile's own settings except
size (rqakit/data/shaped.py): every training stage and Table 4 variant here, in-process on a slice
of the shaped collection. Every chapter and the report run with `rqakit reproduce --profile msmarco
--set $(python -m rqakit.data.shaped msmarco DIR)` (about 10 minutes per profile on 2 cores)."""
import json

import pytest

from rqakit.config import load_config
from rqakit.data.shaped import rehearsal_overrides


@pytest.mark.parametrize("profile", ["msmarco", "nq"])
def test_the_scaling_rule_keeps_the_ratios_the_code_depends_on(profile, tmp_path):
    over = rehearsal_overrides(profile, tmp_path)
    cfg = load_config(profile, over)
    own = load_config(profile)
    j, a = cfg.joint, cfg.augment
    assert j.micro_batch_queries == own.joint.micro_batch_queries
    assert j.batch_queries // j.micro_batch_queries >= 2 and j.list_size > 2
    assert a.retrieve_depth > a.list_size and cfg.evaluate.retrieve_depth >= cfg.evaluate.rerank_depth
    for key in ("model.ce_query_max_len", "warmup_ce.loss", "augment.calibration", "evaluate.measures", "joint.epochs",
                "data.use_titles", "model.pooling"):
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == getattr(getattr(own, section), name), key
    queries = (tmp_path / ("queries.jsonl" if profile == "nq" else "queries.tsv")).read_text().splitlines()
    if profile == "nq":
        assert all(json.loads(line)["answers"] for line in queries)
    else:
        assert all(len(line.split("\t")) == 2 for line in (tmp_path / "docs.tsv").read_text().splitlines())


# A slice: 48 training queries, one seed of each Table 4 variant.
SLICE = {"ablations.seeds": [1], "ablations.list_sizes": [4]}


@pytest.mark.parametrize("profile", ["msmarco", "nq"])
def test_every_stage_and_variant_of_the_paper_profile_trains_on_its_shaped_collection(profile, tmp_path, tiny_cache):
    from rqakit.stages import Workspace, ablations, baselines

    ws = Workspace(load_config(profile, {**rehearsal_overrides(profile, tmp_path / "data", tmp_path / "runs", 48), **SLICE}))
    quiet = lambda *_: None  # noqa: E731
    baselines.run(ws, log=quiet)
    done = ablations.run_all(ws, log=quiet)
    assert {(spec["variant"], spec["list_size"]) for spec, _ in done} == {
        ("dynamic", 8), ("static", 8), ("dynamic", 2), ("static", 2), ("pointwise", 2), ("no-denoise", 2), ("dynamic", 4)}
    measures = load_config(profile).evaluate.measures
    for _, folder in done:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert measures[0] in json.dumps(metrics), folder

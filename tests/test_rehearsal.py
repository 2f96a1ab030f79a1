"""The paper profiles (msmarco, nq) rehearsed at small scale, with the profile's own settings except
size (rqakit/data/shaped.py): every training stage and Table 4 variant in-process on a slice of the
shaped collection, and every chapter to a written report through `rqakit reproduce` with the quick
rehearsal's overrides (`--set $(python -m rqakit.data.shaped PROFILE DIR --quick)`)."""
import json

import pandas as pd
import pytest
from test_own_collection import run_cli
from test_pipeline import assert_complete_report

from rqakit.config import load_config
from rqakit.data.shaped import as_set_args, rehearsal_overrides


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


@pytest.mark.parametrize("profile", ["msmarco", "nq"])
def test_every_stage_and_variant_of_the_paper_profile_trains_on_its_shaped_collection(profile, tmp_path, tiny_cache):
    from rqakit.stages import Workspace, ablations, baselines

    ws = Workspace(load_config(profile, rehearsal_overrides(profile, tmp_path / "data", tmp_path / "runs", quick=True)))
    quiet = lambda *_: None  # noqa: E731
    baselines.run(ws, log=quiet)
    done = ablations.run_all(ws, log=quiet)
    assert {(spec["variant"], spec["list_size"]) for spec, _ in done} == {
        ("dynamic", 8), ("static", 8), ("dynamic", 2), ("static", 2), ("pointwise", 2), ("no-denoise", 2), ("dynamic", 4)}
    measures = load_config(profile).evaluate.measures
    for _, folder in done:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert measures[0] in json.dumps(metrics), folder


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["msmarco", "nq"])
def test_the_paper_profile_reproduces_every_chapter_to_its_report(profile, tmp_path, tiny_cache, capsys):
    """`rqakit reproduce --profile P --set $(python -m rqakit.data.shaped P DIR --quick)`: every
    chapter runs without an error and the report reads the profile's own measures."""
    overrides = as_set_args(rehearsal_overrides(profile, tmp_path / "data", tmp_path / "runs", quick=True))
    out = tmp_path / "report"
    code, summary, err = run_cli(capsys, "reproduce", "--profile", profile, "--out", str(out), "--set", *overrides)
    assert code == 0, err
    assert_complete_report(out, summary)
    rows = pd.DataFrame(json.loads((out / "results.json").read_text()))
    measures = load_config(profile).evaluate.measures
    assert set(measures) <= set(rows[rows.table == "retrieval"].metric), measures
    report = (out / "report.md").read_text()
    assert f"profile `{profile}`" in report and f"On test {measures[0]}" in report

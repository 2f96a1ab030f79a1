"""Where a stage's time goes: each second counted once, curves as evaluation, the split in the manifest."""
import json
import time

import pytest

from rqakit.artifacts import run_stage
from rqakit.timing import live_split, measuring, timed


def test_each_second_counts_once_for_the_innermost_block_unless_a_block_absorbs():
    with measuring() as split:
        with timed("training steps"):
            time.sleep(0.05)
            with timed("evaluation", absorb=True):
                with timed("CE scoring"):      # inside an absorbing block: counted as evaluation
                    time.sleep(0.05)
            with timed("checkpoints"):
                time.sleep(0.03)
        time.sleep(0.02)
    assert set(split) == {"training steps", "evaluation", "checkpoints", "other"}
    assert 0.045 < split["training steps"] < 0.09 and 0.045 < split["evaluation"] < 0.09
    assert 0.025 < split["checkpoints"] < 0.06 and 0.015 < split["other"] < 0.06
    with timed("search"):   # outside `measuring` nothing is recorded, and nothing breaks
        pass


def test_the_live_split_is_the_open_blocks_parts_so_far():
    with measuring():
        with timed("training steps"):
            time.sleep(0.01)
        assert set(live_split()) == {"training steps"}
    assert live_split() == {}


def test_the_stage_manifest_splits_its_time(tmp_path):
    def build(out):
        with timed("corpus encoding"):
            time.sleep(0.03)
        return {}

    folder = run_stage(tmp_path / "stage" / "h1", "h1", build, log=lambda *_: None)
    manifest = json.loads((folder / "manifest.json").read_text())
    split = manifest["time_split_s"]
    assert split["corpus encoding"] >= 0.03 and "other" in split
    assert manifest["wall_time_s"] == pytest.approx(sum(split.values()), abs=0.01)

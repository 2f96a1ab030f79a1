"""Where a stage's time goes: each second counted once, curves as evaluation, the split in the manifest."""
import json
import time

from rqakit.artifacts import run_stage
from rqakit.timing import live_cpu_split, measuring, timed


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


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_cpu_seconds_are_split_like_the_wall_seconds():
    """A part that computes uses about its wall time of CPU; a part that waits uses next to none."""
    cpu: dict = {}
    with measuring(cpu=cpu) as split:
        with timed("training steps"):
            spin(0.2)
            with timed("checkpoints"):
                time.sleep(0.2)
        assert set(live_cpu_split()) == {"training steps", "checkpoints"}
    assert set(cpu) == set(split) == {"training steps", "checkpoints", "other"}
    assert cpu["training steps"] > 0.2 * split["training steps"] and split["training steps"] >= 0.2   # a busy CPU shares
    assert cpu["checkpoints"] < 0.05 and split["checkpoints"] >= 0.2
    assert live_cpu_split() == {}


def test_the_stage_manifest_splits_its_time(tmp_path):
    def build(out):
        with timed("corpus encoding"):
            time.sleep(0.03)
        return {}

    folder = run_stage(tmp_path / "stage" / "h1", "h1", build, log=lambda *_: None)
    manifest = json.loads((folder / "manifest.json").read_text())
    split, cpu = manifest["time_split_s"], manifest["time_split_cpu_s"]
    assert split["corpus encoding"] >= 0.03 and "other" in split
    assert set(cpu) == set(split) and cpu["corpus encoding"] < 0.03   # asleep: no CPU

"""The `rqakit` command line: one JSON object on stdout, or one line on stderr and exit 2."""
import json
from pathlib import Path

import pytest

from rqakit.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_stats_of_scifact(scifact_home, capsys):
    code, out, _ = run_cli(capsys, "data", "stats", "beir/scifact/train")
    assert code == 0
    assert json.loads(out) == {"dataset": "beir/scifact/train", "docs": 5183, "queries": 809, "qrels": 919,
                               "queries_with_positive": 809}
    code, out, _ = run_cli(capsys, "data", "stats", "beir/scifact/test")
    stats = json.loads(out)
    assert (stats["queries"], stats["qrels"]) == (300, 339)


def test_data_stats_of_the_toy_collection_needs_no_cache(capsys):
    code, out, _ = run_cli(capsys, "data", "stats", "rqakit/toy/train")
    stats = json.loads(out)
    assert code == 0 and stats["docs"] == 400 and stats["queries"] == 200
    assert stats["queries_with_positive"] == stats["queries"]


@pytest.mark.parametrize("argv, message", [
    (("data", "stats", "beir/scifactt"), "unknown dataset 'beir/scifactt'; did you mean"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "/no/such/checkpoint"), "does not exist"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--rerank", "/tmp"), "not a cross-encoder folder"),
    (("config", "--profile", "toy", "--set", "joint.lr=fast"), "joint.lr must be a number"),
    (("stage", "nope"), "unknown stage 'nope'"),
    # numbers the commands cannot use fail at parse time, naming the option
    (("config", "--profile", "toy", "--set", "joint.list_size=2.5"), "joint.list_size must be a whole number, got 2.5"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--top", "0"), "argument --top: 0 must be at least 1"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--batch-size", "0"),
     "argument --batch-size: 0 must be"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--depth", "0"),
     "argument --depth: 0 must be at least 1"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "tiny", "--rerank", "/tmp", "--top", "0"), "argument --top"),
    (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--run-out", "/dev/null/dir/run.trec"),
     "argument --run-out: folder /dev/null/dir does not exist"),
    (("evaluate", "--dataset", "rqakit/toy", "--retriever", "bm25"), "'rqakit/toy' has no"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("rqakit: error: ")


def test_evaluate_bm25_on_the_toy_test_split(capsys, tmp_path):
    run_file = tmp_path / "bm25.trec"
    code, out, _ = run_cli(capsys, "evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25",
                           "--run-out", str(run_file))
    result = json.loads(out)
    assert code == 0 and {"nDCG@10", "RR@10", "R@100", "wall_time_s"} <= set(result)
    assert 0.0 < result["nDCG@10"] <= 1.0
    assert len(run_file.read_text().splitlines()) > 0


def test_evaluate_a_backbone_and_rerank_with_a_saved_cross_encoder(capsys, tmp_path):
    from rqakit.models import CrossEncoder

    CrossEncoder.from_backbone("tiny", max_length=48).save_pretrained(tmp_path / "ce")
    code, out, _ = run_cli(capsys, "evaluate", "--dataset", "rqakit/toy/test", "--retriever", "tiny",
                           "--max-length", "48", "--rerank", str(tmp_path / "ce"), "--top", "5", "--depth", "20")
    result = json.loads(out)
    assert code == 0 and result["rerank"]["top"] == 5
    # only the top 5 survive re-ranking, so recall at 100 can only drop
    assert 0.0 <= result["rerank"]["nDCG@10"] <= 1.0 and result["rerank"]["R@100"] <= result["R@100"]


def read_only_folder(tmp_path):
    """A folder no file can be created in: chmod 555, or /sys where root ignores permission bits."""
    from rqakit.artifacts import unwritable_reason

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        if unwritable_reason(candidate):
            return candidate
    pytest.skip("no read-only folder on this machine")


def test_read_only_outputs_are_one_line_naming_the_path(tmp_path, capsys):
    ro = read_only_folder(tmp_path)
    cases = [
        (("reproduce", "--profile", "toy", "--out", str(ro / "report")), "argument --out: "),
        (("evaluate", "--dataset", "rqakit/toy/test", "--retriever", "bm25", "--run-out", str(ro / "bm25.trec")),
         "argument --run-out: "),
        (("stage", "baselines", "--profile", "toy", "--set", f"runtime.workdir={ro / 'runs'}"), "runtime.workdir "),
        (("reproduce", "--profile", "toy", "--out", str(tmp_path / "out"), "--set", f"runtime.workdir={ro / 'runs'}"),
         "runtime.workdir "),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert message in err and str(ro) in err and "not writable" in err
    assert not (tmp_path / "out" / "notebooks").exists()


def test_a_late_os_error_is_one_line_naming_the_file(capsys, monkeypatch):
    import rqakit.data as data

    def full_disk(dataset):
        raise OSError(28, "No space left on device", "/data/stats.json")

    monkeypatch.setattr(data, "dataset_stats", full_disk)
    code, out, err = run_cli(capsys, "data", "stats", "rqakit/toy/train")
    assert code == 2 and err.count("\n") == 1
    assert "/data/stats.json" in err and "No space left on device" in err


def test_a_malformed_profile_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("joint:\n  lr: 1.0e-5\n list_size: 4\n")
    code, out, err = run_cli(capsys, "config", "--profile", str(bad))
    assert code == 2 and err.count("\n") == 1
    assert f"profile {bad} is not valid YAML at line 3" in err
    bad.write_text("- joint\n")
    code, out, err = run_cli(capsys, "stage", "baselines", "--profile", str(bad))
    assert code == 2 and err.count("\n") == 1 and "must be a mapping" in err


def test_ctrl_c_is_one_line_that_says_rerun_resumes(capsys, monkeypatch):
    import rqakit.stages as stages

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_named_stage", interrupted)
    code, out, err = run_cli(capsys, "stage", "joint", "--profile", "toy")
    assert code == 130 and err.count("\n") == 1
    assert err.startswith("rqakit: interrupted in stage joint;") and "again to resume" in err

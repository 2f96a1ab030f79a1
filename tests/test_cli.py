"""The `rqakit` command line: one JSON object on stdout, or one line on stderr and exit 2."""
import json

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

"""Data layer: SciFact through ir_datasets, deterministic splits, local files, and bad input."""
import json
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import NamedTuple

import ir_datasets
import pytest
from ir_datasets.formats import BaseQueries

from rqakit.data import Split, dataset_stats, holdout, load_corpus, load_split, register_local, train_eval_splits
from rqakit.errors import RqaError

REPO = Path(__file__).resolve().parents[1]
FIRST_TITLE = "Microstructural development of human newborn cerebral white matter"


# --- SciFact from the pre-populated cache ------------------------------------------------------

def test_scifact_stats_match_the_published_counts(scifact_home):
    assert dataset_stats("beir/scifact/train") == {
        "dataset": "beir/scifact/train", "docs": 5183, "queries": 809, "qrels": 919, "queries_with_positive": 809}
    test = dataset_stats("beir/scifact/test")
    assert (test["docs"], test["queries"], test["qrels"]) == (5183, 300, 339)


def test_load_split_reads_queries_and_integer_qrels(scifact_home):
    split = load_split("beir/scifact/train")
    assert (split.name, len(split.queries), sum(map(len, split.qrels.values()))) == ("train", 809, 919)
    assert split.queries["0"] == "0-dimensional biomaterials lack inductive properties."
    assert all(type(r) is int for judged in split.qrels.values() for r in judged.values())
    assert split.answers is None


def test_corpus_get_iter_and_titles_switch(scifact_home):
    corpus = load_corpus("beir/scifact/test")
    assert len(corpus) == 5183
    docs = corpus.iter_docs()
    assert isinstance(docs, types.GeneratorType)
    first = next(docs)
    assert first == corpus.get(first.doc_id) and first.doc_id == "4983"
    assert first.title.startswith(FIRST_TITLE) and first.text.startswith("Alterations of the architecture")
    assert corpus.passage_text(first) == f"{first.title} {first.text}"
    assert sum(1 for _ in docs) == 5183 - 1

    untitled = load_corpus("beir/scifact/test", use_titles=False)
    plain = untitled.get("4983")
    assert plain.title == "" and plain.text == first.text and untitled.passage_text(plain) == first.text

    assert [d.doc_id for d in corpus.get_many(["4983", "5836", "4983"])] == ["4983", "5836", "4983"]
    assert pickle.loads(pickle.dumps(corpus)).get("4983") == first


def test_query_split_is_deterministic_by_seed(scifact_home):
    train, held = train_eval_splits("beir/scifact/train", seed=0)
    again_train, again_held = train_eval_splits("beir/scifact/train", seed=0)
    _, other_held = train_eval_splits("beir/scifact/train", seed=1)
    assert (train.name, held.name, len(train.queries), len(held.queries)) == ("train", "eval", 647, 162)
    assert set(held.queries) == set(again_held.queries) and set(train.queries) == set(again_train.queries)
    assert set(held.queries) != set(other_held.queries)
    assert not set(train.queries) & set(held.queries)
    assert set(held.qrels) == set(held.queries)

    train, test = train_eval_splits("beir/scifact/train", "beir/scifact/test")
    assert (len(train.queries), len(test.queries), test.name) == (809, 300, "eval")


def test_holdout_takes_the_first_ids_of_a_seeded_shuffle():
    # sorted ids a..e shuffled by random.Random(0) -> c, b, a, e, d; round(0.4 * 5) = 2 held out.
    split = Split("mem", {q: q.upper() for q in "edcba"}, {q: {"d" + q: 1} for q in "abcde"}, name="train")
    rest, held = holdout(split, 0.4, seed=0)
    assert (set(held.queries), set(rest.queries)) == ({"c", "b"}, {"a", "d", "e"})
    assert (held.name, rest.name, held.qrels) == ("val", "train", {"c": {"dc": 1}, "b": {"db": 1}})
    assert set(holdout(split, 0.4, seed=1)[1].queries) == {"c", "d"}
    with pytest.raises(RqaError, match="between 0 and 1"):
        holdout(split, 1.0)


def test_answers_come_from_the_query_records():
    class QaQuery(NamedTuple):
        query_id: str
        text: str
        answers: tuple

    class QaQueries(BaseQueries):
        def queries_iter(self):
            return iter([QaQuery("1", "who wrote hamlet", ("Shakespeare", "William Shakespeare"))])

        def queries_cls(self):
            return QaQuery

    ir_datasets.registry.register("rqakit-test/qa", ir_datasets.Dataset(QaQueries()))
    split = load_split("rqakit-test/qa", require_qrels=False)
    assert split.answers == {"1": ["Shakespeare", "William Shakespeare"]} and split.qrels == {}


# --- bad input: one line that says what to do -------------------------------------------------

def test_unknown_dataset_names_close_matches():
    with pytest.raises(RqaError) as err:
        load_corpus("beir/scifactt")
    assert str(err.value) == ("unknown dataset 'beir/scifactt'; did you mean: "
                              "beir/scifact, beir/scifact/test, beir/scifact/train?")


def test_split_without_qrels_names_the_splits_that_have_them():
    with pytest.raises(RqaError, match=r"'beir/scifact' has no qrels.*beir/scifact/test") as err:
        load_split("beir/scifact")
    assert "require_qrels" not in str(err.value)  # a Python-only keyword means nothing on the command line
    with pytest.raises(RqaError, match="'rqakit/toy' has no queries"):
        load_split("rqakit/toy")


def test_unknown_doc_id_is_named(scifact_home):
    with pytest.raises(RqaError, match="doc id 'no-such-doc' is not in beir/scifact"):
        load_corpus("beir/scifact").get("no-such-doc")


OFFLINE_SCRIPT = """
import json, os
import ir_datasets.util.download as download
attempts = []
def no_network(self):
    attempts.append(self.url)
    raise ConnectionError("network disabled by the test")
download.RequestsDownload.__iter__ = no_network
from rqakit.data import load_split
from rqakit.errors import RqaError
report = {}
for offline in ("1", ""):
    os.environ["RQAKIT_OFFLINE"] = offline
    try:
        load_split("beir/scifact/train")
        report[offline] = ["loaded", len(attempts)]
    except RqaError as exc:
        report[offline] = [str(exc), len(attempts)]
print(json.dumps(report))
"""


def test_uncached_dataset_names_the_missing_file_and_never_downloads(tmp_path):
    # A fresh interpreter: ir_datasets fixes its cache paths at import, from IR_DATASETS_HOME.
    env = dict(os.environ, IR_DATASETS_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    missing = str(tmp_path / "beir" / "scifact" / "source.zip")
    offline_message, attempts = report["1"]
    assert attempts == 0
    assert offline_message.startswith(f"dataset 'beir/scifact/train': {missing} is missing")
    assert "RQAKIT_OFFLINE=1" in offline_message and "IR_DATASETS_HOME" in offline_message
    failed_message, attempts = report[""]
    assert attempts == 1
    assert missing in failed_message and "download from https://" in failed_message
    assert "network disabled by the test" in failed_message and "data/README.md" in failed_message


# --- local files ---------------------------------------------------------------------------------

def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_local_tsv_round_trip_through_ir_datasets(tmp_path):
    docs = write(tmp_path, "docs.tsv", "d1\tAlpha\tthe first doc\nd2\tBeta\tthe second doc\n\nd3\tGamma\tthird one\n")
    queries = write(tmp_path, "queries.tsv", "q1\twhich comes first\nq2\tthe second one\n")
    qrels = write(tmp_path, "qrels.txt", "q1 0 d1 1\nq2 0 d2 2\nq2 0 d3 0\n")
    dataset_id = register_local("tsv-demo", docs, queries, qrels)
    assert dataset_id == "local/tsv-demo"

    dataset = ir_datasets.load(dataset_id)
    assert [(d.doc_id, d.title, d.text) for d in dataset.docs_iter()] == [
        ("d1", "Alpha", "the first doc"), ("d2", "Beta", "the second doc"), ("d3", "Gamma", "third one")]
    split = load_split(dataset_id, name="train")
    assert split.queries == {"q1": "which comes first", "q2": "the second one"}
    assert split.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    corpus = load_corpus(dataset_id)
    assert len(corpus) == 3 and corpus.passage_text(corpus.get("d3")) == "Gamma third one"
    assert not list(tmp_path.glob("*.pklz4"))  # the docs store lives under IR_DATASETS_HOME
    assert register_local("tsv-demo", docs, queries, qrels) == dataset_id


def test_local_beir_jsonl_round_trip_through_ir_datasets(tmp_path):
    docs = write(tmp_path, "corpus.jsonl",
                 '{"_id": "d1", "title": "A", "text": "x y", "metadata": {}}\n{"_id": "d2", "title": "", "text": "z"}\n')
    queries = write(tmp_path, "queries.jsonl", '{"_id": "q1", "text": "hello"}\n{"_id": "q2", "text": "again"}\n')
    qrels = write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    dataset_id = register_local("beir-demo/test", docs, queries, qrels)

    assert [tuple(q) for q in ir_datasets.load(dataset_id).queries_iter()] == [("q1", "hello"), ("q2", "again")]
    assert load_split(dataset_id).qrels == {"q1": {"d2": 1}}
    corpus = load_corpus(dataset_id)
    assert list(corpus.iter_docs())[0] == ("d1", "A", "x y")
    assert corpus.passage_text(corpus.get("d2")) == "z"
    assert load_corpus(dataset_id, use_titles=False).get("d1").title == ""


def test_local_jsonl_queries_with_answers_fill_the_split_answers(tmp_path):
    docs = write(tmp_path, "docs.tsv", "d1\tParis\tParis is the capital of France.\n")
    queries = write(tmp_path, "queries.jsonl", '{"_id": "q1", "text": "capital of france", "answers": ["Paris"]}\n'
                                              '{"_id": "q2", "text": "who", "answers": []}\n')
    qrels = write(tmp_path, "qrels.txt", "q1 0 d1 1\n")
    split = load_split(register_local("qa-demo", docs, queries, qrels))
    assert split.answers == {"q1": ["Paris"], "q2": []} and split.queries["q1"] == "capital of france"
    bad = write(tmp_path, "bad.jsonl",
                '{"_id": "q1", "text": "a", "answers": ["x"]}\n{"_id": "q2", "text": "b", "answers": "y"}\n')
    with pytest.raises(RqaError, match="bad.jsonl, line 2: expected an 'answers' list of strings"):
        register_local("qa-bad", docs, bad)


def test_local_split_without_qrels(tmp_path):
    docs = write(tmp_path, "docs.tsv", "d1\tsome text\n")
    queries = write(tmp_path, "queries.tsv", "q1\tsome query\n")
    dataset_id = register_local("no-qrels", docs, queries)
    with pytest.raises(RqaError, match="'local/no-qrels' has no qrels"):
        load_split(dataset_id)
    assert load_split(dataset_id, require_qrels=False).qrels == {}


MALFORMED = [
    # (file name, content, line, what the message says was expected)
    ("docs.tsv", "d1\tone\nd2\n", 2, "expected 2 tab-separated columns like the first row, got 1"),
    ("docs.tsv", "d1\ta\tb\tc\n", 1, "expected 2 or 3 tab-separated columns"),
    ("docs.tsv", "d1\tone\nd1\ttwo\n", 2, "doc id 'd1' repeats line 1"),
    ("docs.tsv", "d1\tone\nd 2\ttwo\n", 2, "expected a doc id without spaces"),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n', 2,
     "expected one JSON object per line, got invalid JSON"),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"id": "d2", "text": "b"}\n', 2, "expected a '_id' field"),
    ("corpus.jsonl", '{"_id": "d1", "title": "t", "text": "a"}\n{"_id": "d2", "text": "b"}\n', 2,
     "expected a string 'title' field"),
    ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n\n', 2, "expected one JSON object per line, got a blank line"),
]


@pytest.mark.parametrize("name, content, line, expected", MALFORMED)
def test_malformed_docs_file_names_file_line_and_expectation(tmp_path, name, content, line, expected):
    path = write(tmp_path, name, content)
    with pytest.raises(RqaError) as err:
        register_local("broken", path)
    assert str(err.value).startswith(f"{path}, line {line}: {expected}")


def test_malformed_queries_and_qrels_files(tmp_path):
    docs = write(tmp_path, "docs.tsv", "d1\tone\nd2\ttwo\n")
    good_queries = write(tmp_path, "queries.tsv", "q1\tfirst\n")
    bad_queries = write(tmp_path, "bad_queries.tsv", "q1\tfirst\textra\n")
    expected = rf"^{re.escape(str(bad_queries))}, line 1: expected 2 tab-separated columns \(query_id, text\)"
    with pytest.raises(RqaError, match=expected):
        register_local("broken", docs, bad_queries)
    cases = [("q1 0 d1 high\n", 1, "expected an integer relevance"),
             ("q1 0 d1 1\nq1 d2 1\n", 2, "expected TREC qrels 'query_id 0 doc_id relevance'"),
             ("q1 0 d9 1\n", 1, f"doc id 'd9' is not in {docs}"),
             ("q1 0 d1 1\nq7 0 d1 1\n", 2, f"query id 'q7' is not in {good_queries}"),
             ("query-id corpus-id score\nq1 d1 1\n", 1, "expected the BEIR header"),
             ("query-id\tcorpus-id\tscore\nq1\td1\n", 2, "expected 3 columns 'query-id corpus-id score'")]
    for content, line, expected in cases:
        qrels = write(tmp_path, "qrels.txt", content)
        with pytest.raises(RqaError) as err:
            register_local("broken", docs, good_queries, qrels)
        assert str(err.value).startswith(f"{qrels}, line {line}: {expected}"), str(err.value)


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "docs.tsv"
    path.write_bytes(b"d1\tfine\nd2\t\xff\xfe broken\n")
    with pytest.raises(RqaError, match=rf"^{re.escape(str(path))}, line 2: expected UTF-8 text"):
        register_local("broken", path)
    with pytest.raises(RqaError, match="docs file .*nothing.tsv does not exist"):
        register_local("broken", tmp_path / "nothing.tsv")
    with pytest.raises(RqaError, match="must be letters, digits"):
        register_local("two words", path)


def test_importing_the_kit_leaves_ir_datasets_untouched():
    """Registering rqakit/toy and guarding downloads happen when a dataset is first opened."""
    import subprocess
    import sys

    code = ("import ir_datasets; from ir_datasets.util.download import Download; "
            "import rqakit.data, rqakit.models, rqakit.encode, rqakit.search, rqakit.stages; "
            "assert not getattr(Download.path, 'rqakit_guard', False), 'guard installed on import'; "
            "assert 'rqakit/toy' not in set(ir_datasets.registry), 'toy registered on import'; "
            "from rqakit.data import load_split; load_split('rqakit/toy/test'); "
            "assert getattr(Download.path, 'rqakit_guard', False) and 'rqakit/toy' in set(ir_datasets.registry)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]

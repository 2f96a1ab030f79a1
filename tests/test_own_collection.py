"""Your own collection from a profile (data.files): `rqakit init` on a BEIR folder, then the
README's commands to a report; content-addressed dataset IDs; one-line errors for bad files."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline import assert_complete_report

from rqakit import pipeline
from rqakit.cli import main
from rqakit.config import load_config, report_hash
from rqakit.data import load_corpus, load_split, toy
from rqakit.errors import RqaError
from rqakit.stages import Workspace

REPO = Path(__file__).resolve().parents[1]
STAGES = ("baselines", "warmup_de", "warmup_ce", "augment", "joint-dynamic-m4-s1")


def write_beir(folder: Path, splits=("train", "test")) -> Path:
    """The toy collection as a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    collection = toy.generate()
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n"
                                                 for d in collection.docs))
    chosen = {name: collection.splits[name] for name in splits}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n"
                                                  for split in chosen.values() for q, t in split.queries.items()))
    for name, split in chosen.items():
        rows = "".join(f"{q}\t{d}\t{r}\n" for q, judged in split.qrels.items() for d, r in judged.items())
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def run_cli(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]) if code == 0 else None, captured.err


# --- the README's three commands ------------------------------------------------------------------

@pytest.mark.slow
def test_init_plan_reproduce_from_a_beir_folder(tmp_path, monkeypatch, capsys):
    """As a new user types them, from the folder that holds the collection (relative paths), with
    the toy profile's settings: every chapter runs in the notebook kernels and the report has
    every table."""
    monkeypatch.chdir(tmp_path)
    write_beir(tmp_path / "my_collection")
    workdir = f"runtime.workdir={tmp_path / 'runs'}"   # the stage cache: never the repository's runs/

    took, start = {}, time.time()
    code, found, err = run_cli(capsys, "init", "my_profile.yaml", "--data", "my_collection", "--from", "toy")
    took["init"] = time.time() - start
    assert code == 0, err
    assert (found["docs"], found["eval"], found["settings_from"]) == (400, "test", "toy")
    assert found["splits"] == {"train": {"queries": 200, "qrels": 400, "queries_with_positive": 200},
                               "test": {"queries": 100, "qrels": 200, "queries_with_positive": 100}}
    assert "evaluation: the collection's test split (100 queries)" in err
    written = Path("my_profile.yaml").read_text()
    assert "    beir: my_collection " in written and "  eval: test " in written and "portable" in written

    start = time.time()
    code, plan, err = run_cli(capsys, "plan", "--profile", "my_profile.yaml", "--peak-gflops", "50", "--set", workdir)
    took["plan"] = time.time() - start
    assert code == 0, err
    assert plan["counts"] == {"docs": 400, "train": 170, "val": 30, "test": 100, "train_pairs": 340, "from": "data"}

    start = time.time()
    out = tmp_path / "report"
    code, summary, err = run_cli(capsys, "reproduce", "--profile", "my_profile.yaml", "--out", str(out), "--set", workdir)
    took["reproduce"] = time.time() - start
    with capsys.disabled():
        print("own collection: " + ", ".join(f"{command} {seconds:.1f} s" for command, seconds in took.items()))
    assert code == 0, err
    assert_complete_report(out, summary)
    cfg = load_config("my_profile.yaml", [workdir])
    assert cfg.data.train.startswith("local/") and cfg.data.train in (out / "report.md").read_text()
    assert summary["config_hash"] == report_hash(cfg) and "check" not in summary   # no committed report to compare
    assert not (REPO / "reports" / "my_profile").exists()


# --- content, not paths, names the data -------------------------------------------------------------

def test_a_moved_collection_keeps_its_stage_folders_and_an_edited_one_does_not(tmp_path):
    first = write_beir(tmp_path / "a" / "collection")
    (tmp_path / "a" / "p.yaml").write_text("data:\n  files:\n    beir: collection\n  train: train\n  eval: test\n")
    before = Workspace(load_config(str(tmp_path / "a" / "p.yaml")))

    shutil.move(tmp_path / "a", tmp_path / "b")   # the profile and its collection, renamed together
    moved = Workspace(load_config(str(tmp_path / "b" / "p.yaml")))
    assert moved.config.data.files.beir == str(tmp_path / "b" / "collection")
    assert {s: moved.folder(s) for s in STAGES} == {s: before.folder(s) for s in STAGES}
    assert report_hash(moved.config) == report_hash(before.config)
    assert first.parent.name == "a" and not first.exists()

    test_qrels = tmp_path / "b" / "collection" / "qrels" / "test.tsv"
    test_qrels.write_text(test_qrels.read_text().replace("\t2\n", "\t1\n", 1))
    edited = Workspace(load_config(str(tmp_path / "b" / "p.yaml")))
    assert edited.config.data.train == before.config.data.train and edited.config.data.eval != before.config.data.eval
    assert all(edited.folder(s) != before.folder(s) for s in STAGES)   # every stage reports on the test split


def test_a_split_holds_the_queries_its_qrels_judge(tmp_path):
    write_beir(tmp_path / "c")
    cfg = load_config("toy", {"data.files.beir": str(tmp_path / "c"), "data.train": "train", "data.eval": "test"})
    train, test = load_split(cfg.data.train), load_split(cfg.data.eval)
    assert train.queries == load_split("rqakit/toy/train").queries and train.qrels == load_split("rqakit/toy/train").qrels
    assert test.queries == load_split("rqakit/toy/test").queries
    assert load_corpus(cfg.data.train).get("golden-falcon-habitat") == load_corpus("rqakit/toy").get("golden-falcon-habitat")


def test_separate_files_with_a_seeded_evaluation_split(tmp_path):
    (tmp_path / "docs.tsv").write_text("d1\tAlpha\tthe first doc\nd2\tBeta\tthe second doc\nd3\tGamma\tthird\n")
    (tmp_path / "queries.tsv").write_text("q1\tfirst\nq2\tsecond\nq3\tthird\n")
    (tmp_path / "train.qrels").write_text("q1 0 d1 1\nq2 0 d2 1\nq3 0 d3 1\n")
    profile = tmp_path / "sep.yaml"
    profile.write_text("data:\n  files:\n    docs: docs.tsv\n    queries: queries.tsv\n    qrels:\n      train: train.qrels\n"
                       "  train: train\n  eval: null\n")
    cfg = load_config(str(profile))
    assert cfg.data.eval is None and cfg.data.files.qrels.train == str(tmp_path / "train.qrels")
    assert load_split(cfg.data.train).qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}


def test_a_fresh_process_registers_the_files_from_the_profile_alone(tmp_path):
    """What a notebook kernel does: load the profile, then open its dataset IDs."""
    write_beir(tmp_path / "c")
    profile = tmp_path / "p.yaml"
    profile.write_text("data:\n  files:\n    beir: c\n  train: train\n  eval: test\n")
    code = ("import sys; from rqakit.config import load_config; from rqakit.data import load_split; "
            "cfg = load_config(sys.argv[1]); print(len(load_split(cfg.data.eval).queries))")
    result = subprocess.run([sys.executable, "-c", code, str(profile)], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "100"


def test_init_without_a_test_split_holds_out_train_queries_by_seed(tmp_path, capsys):
    write_beir(tmp_path / "c", splits=("train",))
    code, found, err = run_cli(capsys, "init", str(tmp_path / "p.yaml"), "--data", str(tmp_path / "c"), "--from", "toy")
    assert code == 0, err
    assert found["eval"] is None and found["eval_id"] is None
    note = "no test split, so 40 of the 200 train queries (20%) are held out for evaluation by data.split_seed = 0"
    assert note in found["evaluation"] and note in err
    cfg = load_config(str(tmp_path / "p.yaml"))
    ws = Workspace(cfg)
    assert (len(ws.test.queries), len(ws.train.queries) + len(ws.val.queries)) == (40, 160)


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    write_beir(tmp_path / "c")
    profile = tmp_path / "p.yaml"
    profile.write_text("# mine\n")
    code, _, err = run_cli(capsys, "init", str(profile), "--data", str(tmp_path / "c"))
    assert (code, err.strip()) == (2, f"rqakit: error: {profile} exists; pass --force to overwrite it, or choose another name")
    assert profile.read_text() == "# mine\n"
    code, found, err = run_cli(capsys, "init", str(profile), "--data", str(tmp_path / "c"), "--force")
    assert code == 0, err
    assert found["settings_from"] == "scifact" and load_config(str(profile)).model.backbone == "minilm"


# --- bad input: one line naming the file, the line and what to do -----------------------------------

def edit(path: Path, old: str, new: str, count: int = 1) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def bad_corpus(c):
    path = edit(c / "corpus.jsonl", '{"_id": "golden-falcon-diet"', '{"_id": "golden-falcon-diet",')
    return (f"{path}, line {line_of(path, 'golden-falcon-diet')}: expected one JSON object per line, got invalid JSON "
            "(Expecting property name enclosed in double quotes); fix the file (formats: data/README.md)")


def missing_train_split(c):
    (c / "qrels" / "train.tsv").unlink()
    return (f"{c / 'qrels' / 'train.tsv'} does not exist; a collection to train on needs the qrels of its train split "
            "there (dev.tsv and test.tsv are optional)")


def unknown_doc(c):
    path = c / "qrels" / "test.tsv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].split("\t")[0] + "\tno-such-doc\t2"
    path.write_text("\n".join(lines) + "\n")
    return f"{path}, line 2: doc id 'no-such-doc' is not in {c / 'corpus.jsonl'}; fix the file (formats: data/README.md)"


def query_without_qrels(c):
    path = c / "queries.jsonl"
    path.write_text(path.read_text() + '{"_id": "q999", "text": "what does the golden falcon eat"}\n')
    return (f"{path}, line 301: query 'q999' has no qrels in train.tsv or test.tsv; judge it in a split's qrels or "
            "remove the line")


def empty_split(c):
    path = c / "qrels" / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\n")
    return f"{path} judges no query; add the split's qrels or remove the file"


BAD = {"malformed JSONL line": bad_corpus, "missing train qrels": missing_train_split,
       "qrels naming an unknown doc": unknown_doc, "query without qrels": query_without_qrels, "empty split": empty_split}


@pytest.mark.parametrize("case", BAD)
def test_bad_collection_is_one_line_naming_file_and_line(tmp_path, capsys, case):
    collection = write_beir(tmp_path / "c")
    expected = BAD[case](collection)
    code, _, err = run_cli(capsys, "init", str(tmp_path / "p.yaml"), "--data", str(collection), "--from", "toy")
    assert (code, err.strip()) == (2, f"rqakit: error: {expected}")
    assert not (tmp_path / "p.yaml").exists() and not list(tmp_path.glob(".p.yaml*"))   # nothing half-written


def test_a_profile_whose_files_went_bad_fails_before_any_kernel(tmp_path, monkeypatch):
    collection = write_beir(tmp_path / "c")
    profile = tmp_path / "p.yaml"
    profile.write_text("data:\n  files:\n    beir: c\n  train: train\n  eval: test\n")
    expected = query_without_qrels(collection)
    monkeypatch.setattr(pipeline, "run_chapter", lambda *a, **k: pytest.fail("a kernel started"))
    with pytest.raises(RqaError) as err:
        pipeline.reproduce(str(profile), out=tmp_path / "out", overrides=[f"runtime.workdir={tmp_path / 'runs'}"])
    assert str(err.value) == expected


@pytest.mark.parametrize("data, message", [
    ("  files:\n    beir: c\n  train: train\n  eval: dev\n",
     "data.eval = 'dev' but the collection has no dev qrels ({c}/qrels/dev.tsv); add them, or set data.eval: null to "
     "hold out data.eval_fraction of train"),
    ("  files:\n    beir: c\n  train: rqakit/toy/train\n",
     "data.train = 'rqakit/toy/train': with data.files, name a split of the collection (train, dev, test)"),
    ("  files:\n    beir: nowhere\n  train: train\n",
     "data.files.beir: {tmp}/nowhere is not a folder; give a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"),
    ("  files:\n    beir: c\n    docs: c/corpus.jsonl\n  train: train\n",
     "data.files names a BEIR folder and separate files; keep one: beir, or docs + queries + qrels"),
    ("  files:\n    docs: c/corpus.jsonl\n    qrels:\n      train: c/qrels/train.tsv\n  train: train\n",
     "data.files names no data.files.queries; separate files need docs, queries and the qrels of at least the train split "
     "(data.files.qrels.train)"),
    ("  files:\n    beir: c\n  train: train\n  eval: train\n",
     "data.eval = 'train' is the training split; name another split, or null to hold out data.eval_fraction of train"),
])
def test_a_profile_naming_files_wrongly_says_what_to_do(tmp_path, data, message):
    write_beir(tmp_path / "c")
    profile = tmp_path / "p.yaml"
    profile.write_text("data:\n" + data)
    with pytest.raises(RqaError) as err:
        load_config(str(profile))
    assert str(err.value) == message.format(c=tmp_path / "c", tmp=tmp_path)


def test_init_refuses_a_built_in_profile_name_and_a_name_without_yaml(tmp_path, capsys):
    write_beir(tmp_path / "c")
    for name, message in (("toy.yaml", "'toy' is a built-in profile's name"), ("mine", "a profile is a .yaml file")):
        code, _, err = run_cli(capsys, "init", str(tmp_path / name), "--data", str(tmp_path / "c"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1

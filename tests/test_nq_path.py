"""The nq profile's evaluation path end to end on a tiny answer-bearing collection (local files).

Passages, questions with gold answers and qrels are written to files and registered through
`rqakit.data.register_local`, as a user's own QA collection would be. The test qrels are chosen to
disagree with the answers, so a stage that scored NQ by its qrels would report other numbers.
"""
import json

import pytest

from rqakit.commands import evaluate as evaluate_command
from rqakit.config import load_config
from rqakit.data import register_local
from rqakit.stages import Workspace, baselines, warmup_ce
from rqakit.stages.common import bm25_ranking, load_run, ranked_ids

DOCS = """\
d1\tParis\tParis is the capital and largest city of France.
d2\tLyon\tLyon is a city in France on the Rhone.
d3\tEverest\tMount Everest is the highest mountain above sea level.
d4\tK2\tK2 is the second highest mountain on Earth.
d5\tThames\tThe River Thames flows through London.
d6\tSeine\tThe Seine flows through the French capital.
d7\tHilton\tParis Hilton once toured France by train.
d8\tDanube\tThe Danube flows through Vienna and Budapest.
d9\tNile\tThe Nile is the longest river in Africa.
d10\tAmazon\tThe Amazon carries more water than any other river.
d11\tAlps\tMont Blanc is the highest peak of the Alps.
d12\tTokyo\tTokyo is the capital of Japan.
"""
TRAIN = [
    ("q1", "what is the capital of france", ["Paris"], "d1"),
    ("q2", "capital of japan", ["Tokyo"], "d12"),
    ("q3", "longest river in africa", ["Nile"], "d9"),
    ("q4", "river through vienna", ["Danube"], "d8"),
    ("q5", "highest peak of the alps", ["Mont Blanc"], "d11"),
]
# t1-t3: BM25's first passage holds the answer. t4: no passage holds "Lhotse".
TEST = [
    ("t1", "largest city of france", ["Paris"], "d6"),          # qrels name the Seine page: no answer in it
    ("t2", "which river flows through london", ["Thames"], "d5"),
    ("t3", "highest mountain above sea level", ["Mount Everest"], "d4"),
    ("t4", "second highest mountain", ["Lhotse"], "d4"),        # by qrels a hit at rank 1, by answers none
]
MEASURES = ["Success@1", "Success@5", "RR@10"]


def write_split(folder, name, rows):
    queries = folder / f"{name}.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t, "answers": a}) + "\n" for q, t, a, _ in rows))
    qrels = folder / f"{name}.qrels"
    qrels.write_text("".join(f"{q} 0 {d} 1\n" for q, _, _, d in rows))
    return queries, qrels


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_cache):
    folder = tmp_path_factory.mktemp("tiny-nq")
    docs = folder / "docs.tsv"
    docs.write_text(DOCS)
    train = register_local("tiny-nq/train", docs, *write_split(folder, "train", TRAIN))
    test = register_local("tiny-nq/test", docs, *write_split(folder, "test", TEST))
    cfg = load_config("nq", {"data.train": train, "data.eval": test, "data.val_fraction": 0.2,
                             "model.backbone": "tiny", "evaluate.retrieve_depth": 5, "evaluate.measures": MEASURES,
                             "evaluate.batch_size": 8, "warmup_de.bm25_depth": 12, "warmup_ce.depth": 12,
                             "runtime.workdir": str(folder / "runs")})
    return Workspace(cfg)


def test_the_splits_carry_answers_and_bm25_ranks_as_designed(ws):
    assert ws.test.answers == {q: a for q, _, a, _ in TEST}
    assert set(ws.train.answers) == set(ws.train.queries) and len(ws.val.queries) == 1
    run = load_run(baselines.run(ws, log=lambda *_: None), "bm25.test")
    assert [ranked_ids(run, q, 1)[0] for q in ("t1", "t2", "t3", "t4")] == ["d1", "d5", "d3", "d4"]


def test_every_stage_metric_of_the_nq_profile_is_an_answer_hit_rate(ws):
    metrics = json.loads((baselines.run(ws, log=lambda *_: None) / "metrics.json").read_text())
    # t1, t2, t3: an answer at rank 1; t4: no passage holds the answer. By qrels: t2 and t4 at rank 1.
    assert metrics["bm25"] == pytest.approx({"Success@1": 0.75, "Success@5": 0.75, "RR@10": 0.75})
    for system in ("zeroshot-mean", "zeroshot-cls"):  # a random tiny BERT: any order, still scored by answers
        assert set(metrics[system]) == set(MEASURES) and metrics[system]["Success@5"] <= 0.75


def test_rqakit_evaluate_scores_the_same_split_by_answers_and_qrels_only_when_asked(ws):
    result = evaluate_command(dataset=ws.cfg.data.eval, retriever="bm25", depth=5, measures=MEASURES)
    assert {m: result[m] for m in MEASURES} == pytest.approx({"Success@1": 0.75, "Success@5": 0.75, "RR@10": 0.75})
    by_qrels = load_config("nq", {"evaluate.relevance": "qrels"})
    assert by_qrels.evaluate.relevance == "qrels"
    from rqakit.stages.common import metrics_of

    qrels_metrics = metrics_of(load_run(ws.folder("baselines"), "bm25.test"), ws.test, ["Success@1"], ws.corpus, "qrels")
    assert qrels_metrics == pytest.approx({"Success@1": 0.5})   # t2 and t4


def test_negatives_never_contain_an_answer_on_the_nq_path(ws):
    rankings = [bm25_ranking(baselines.run(ws, log=lambda *_: None), ws.train.queries, 12)]
    pools = warmup_ce.negative_pools(ws, rankings, depth=12)
    # q1 "capital of france": d7 (Paris Hilton) contains "Paris" and must never be its negative
    assert "d7" in rankings[0]["q1"] and "d7" not in pools["q1"] and "d1" not in pools["q1"]
    assert "d6" in pools["q1"]                                    # the Seine page has no answer: a negative
    off = Workspace(load_config("nq", {**{k: v for k, v in _overrides(ws).items()}, "data.answer_free_negatives": False}))
    assert "d7" in warmup_ce.negative_pools(off, rankings, depth=12)["q1"]


def _overrides(ws):
    c = ws.cfg
    return {"data.train": c.data.train, "data.eval": c.data.eval, "data.val_fraction": c.data.val_fraction,
            "model.backbone": "tiny", "runtime.workdir": c.runtime.workdir}

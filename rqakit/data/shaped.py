"""Rehearsing a paper profile (msmarco, nq) on a CPU: its own settings except size.

`rehearsal_overrides(profile, folder)` writes a small collection shaped like the profile's own
(from the toy's 400 passages and 300 queries) into `folder` as local files, and returns the
`--set` overrides that run the profile on it with the tiny backbone:

    rqakit reproduce --profile msmarco --out /tmp/r/report --set $(python -m rqakit.data.shaped msmarco /tmp/r)

(about 10 minutes per profile on 2 cores; `--quick` after the folder: 48 training queries and one
seed of each variant, about 2 minutes, as CI runs it).

Shapes (chosen by the prefix of the profile's `data.train`):
- `msmarco-passage`: passages without titles (`doc_id<TAB>text`), TSV queries, one judged positive
  per query (relevance 1), a train split and a dev-like split (`data.eval: dev`).
- `dpr-w100` (NQ): passages with titles, JSONL questions with `"answers"` on every line (the fact
  the relevant page states: the split is scored by answers, answer-bearing passages are no
  negatives), one positive per question in the qrels, train and dev.

The scaling rule keeps every ratio the code depends on. With s = augment.list_size / 8 (msmarco 16,
nq 4):
- list sizes m (augment, joint, ablations.list_size, ablations.list_sizes) become max(2, m / s);
  warmup_ce's 1 + 4 lists are already small and stay;
- retrieval and scoring depths become max(m', d / s) for the list size m' they feed, never deeper
  than the collection; BM25 and warmup_ce negative depths likewise; evaluate.rerank_depth is at
  least 10 (a re-ranked run holds only its top N, and RR@10 / nDCG@10 read ten ranks);
- joint.micro_batch_queries stays (3 for msmarco, 12 for nq); joint.batch_queries keeps at least
  2 micro-batches per step: micro x max(2, (batch / micro) / s); warmup batches are divided by s
  (at least the joint micro-batch, at most half the training queries left after validation);
- data.val_fraction is raised to 0.1 where the profile's would hold out fewer than 8 queries;
- eval_every and checkpoint_every become 4 steps; epochs, learning rates, losses, calibration,
  lengths, poolings and measures are the profile's own; fp32 on one thread (runtime).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rqakit.config import load_config
from rqakit.data.toy import ASPECT_BY_NAME, _facts, generate

LIST_SIZE = 8            # the rehearsal's augment.list_size
QUICK_QUERIES = 48       # --quick: training queries, and one seed of every Table 4 variant
QUICK = {"ablations.seeds": [1], "ablations.list_sizes": [4]}
MIN_VAL_QUERIES = 8
RERANK_AT_LEAST = 10     # re-ranked top N no shallower than the measures' @10
SHAPES = {"msmarco-passage": "msmarco", "dpr-w100": "nq"}


def shape_of(cfg) -> str:
    prefix = str(cfg.data.train).split("/", 1)[0]
    if prefix not in SHAPES:
        raise ValueError(f"no rehearsal shape for data.train = {cfg.data.train!r}; known: {', '.join(SHAPES)}")
    return SHAPES[prefix]


def _answer(doc_id: str) -> str:
    """The fact a species' aspect page states and its siblings' pages (mostly) do not."""
    adj, animal, aspect = doc_id.split("-", 2)
    slot = ASPECT_BY_NAME[aspect].species_fact[0]
    return str(_facts(adj, animal, ASPECT_BY_NAME[aspect])[slot])


def write_collection(shape: str, folder: str | Path) -> dict:
    """The files of a `shape` collection in `folder`; -> the data.files.* overrides."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    toy = generate()
    docs = folder / "docs.tsv"
    with docs.open("w") as f:
        for d in toy.docs:
            f.write(f"{d.doc_id}\t{d.text}\n" if shape == "msmarco" else f"{d.doc_id}\t{d.title}\t{d.text}\n")
    queries = folder / ("queries.tsv" if shape == "msmarco" else "queries.jsonl")
    texts = {d.doc_id: d.text for d in toy.docs}
    overrides = {"data.files.docs": str(docs), "data.files.queries": str(queries)}
    with queries.open("w") as fq:
        for toy_split, split in (("train", "train"), ("test", "dev")):
            qrels = folder / f"{split}.qrels"
            with qrels.open("w") as fr:
                for qid, text in toy.splits[toy_split].queries.items():
                    positive = next(d for d, grade in toy.splits[toy_split].qrels[qid].items() if grade == 2)
                    fr.write(f"{qid} 0 {positive} 1\n")
                    if shape == "msmarco":
                        fq.write(f"{qid}\t{text}\n")
                    else:
                        answer = _answer(positive)
                        assert answer in texts[positive], (positive, answer)
                        fq.write(json.dumps({"_id": qid, "text": text, "answers": [answer]}) + "\n")
            overrides[f"data.files.qrels.{split}"] = str(qrels)
    return overrides


def scaling(cfg, n_docs: int, n_train: int) -> dict:
    """The size overrides of the rule in the module docstring."""
    a, j, w, e, ab = cfg.augment, cfg.joint, cfg.warmup_ce, cfg.evaluate, cfg.ablations
    s = max(1, a.list_size // LIST_SIZE)

    def m(x):
        return max(2, x // s)

    def depth(d, at_least):
        return min(n_docs, max(at_least, d // s))

    micro = j.micro_batch_queries
    most = int(n_train * 0.9) // 2     # a warmup batch: at most half the training queries left after validation
    out = {"augment.list_size": m(a.list_size), "joint.list_size": m(j.list_size),
           "ablations.list_sizes": sorted({m(x) for x in ab.list_sizes})}
    if ab.list_size is not None:
        out["ablations.list_size"] = m(ab.list_size)
    lists = out["augment.list_size"]
    out.update({
        "augment.retrieve_depth": depth(a.retrieve_depth, 2 * lists),
        "evaluate.retrieve_depth": depth(e.retrieve_depth, 2 * lists),
        "warmup_de.bm25_depth": depth(cfg.warmup_de.bm25_depth, lists),
        "warmup_ce.depth": depth(w.depth, 2 * w.list_size),
        "joint.batch_queries": micro * max(2, (j.batch_queries // micro) // s),
        "warmup_de.batch_queries": max(micro, min(cfg.warmup_de.batch_queries // s, most)),
        "warmup_ce.batch_queries": max(micro, min(w.batch_queries // s, most)),
        "joint.eval_every": 4, "joint.checkpoint_every": 4,
    })
    out["augment.score_depth"] = min(out["augment.retrieve_depth"], max(2, a.score_depth // s))
    out["evaluate.rerank_depth"] = min(out["evaluate.retrieve_depth"], max(RERANK_AT_LEAST, e.rerank_depth // s))
    if n_train * cfg.data.val_fraction < MIN_VAL_QUERIES:
        out["data.val_fraction"] = 0.1
    return out


def rehearsal_overrides(profile: str, folder: str | Path, workdir: str | Path | None = None,
                        max_train_queries: int | None = None, quick: bool = False) -> dict:
    """Write the profile's shaped collection into `folder`; -> every override of its rehearsal
    (on the first `max_train_queries` training queries where given). `quick`: 48 training queries
    and one seed of each variant, every chapter in about 2 minutes on 2 cores (the CI rehearsal)."""
    if quick:
        max_train_queries = max_train_queries or QUICK_QUERIES
    cfg = load_config(profile)
    shape = shape_of(cfg)
    toy = generate()
    out = {"data.train": "train", "data.eval": "dev", **write_collection(shape, folder)}
    n_train = len(toy.splits["train"].queries)
    if max_train_queries:
        out["data.max_train_queries"] = max_train_queries
        n_train = min(n_train, max_train_queries)
    out.update(scaling(cfg, len(toy.docs), n_train))
    out.update({"model.backbone": "tiny", "runtime.threads": 1, "runtime.precision": "fp32",
                "runtime.workdir": str(workdir or Path(folder) / "runs")})
    return {**out, **(QUICK if quick else {})}


def as_set_args(overrides: dict) -> list[str]:
    """`key=value` strings for `--set` (lists as YAML flow sequences)."""
    return [f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, list) else v}" for k, v in overrides.items()]


if __name__ == "__main__":   # python -m rqakit.data.shaped PROFILE FOLDER [--quick]: the --set arguments, one line
    print(" ".join(as_set_args(rehearsal_overrides(sys.argv[1], sys.argv[2], quick="--quick" in sys.argv[3:]))))

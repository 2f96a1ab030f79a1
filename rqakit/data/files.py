"""Your own collection named in a profile (`data.files`): checked as a whole, and each split
registered in ir_datasets under the `local/<digest>/<split>` ID the config resolved it to.

    cfg = load_config("my_profile.yaml")   # data.files.beir: my_collection -> data.train "local/3f0c.../train"
    open_dataset(cfg.data.train)           # registers it on first use, in any process (a notebook kernel too)
    check_collection(collection_files(cfg.data.files))   # counts; the first bad line as a one-line RqaError

Beyond each file's own checks (rqakit.data.local), a collection must judge every query in some
split's qrels. A split's queries are those its qrels judge, as in BEIR's one queries.jsonl.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rqakit.config import LOCAL_COLLECTIONS
from rqakit.data.local import _Checked, _signature, check_docs, check_qrels, check_queries, is_registered, register_checked
from rqakit.errors import RqaError


@dataclass
class CheckedCollection:
    docs: _Checked
    queries: _Checked
    qrels: dict            # split -> _Checked

    def counts(self) -> dict:
        """{"docs": n, split: {"queries": judged, "qrels": lines, "queries_with_positive": n}, ...}."""
        return {"docs": len(self.docs.ids),
                **{s: {"queries": len(q.ids), "qrels": q.rows, "queries_with_positive": len(q.positive)}
                   for s, q in self.qrels.items()}}


_checked: dict[tuple, CheckedCollection] = {}   # file signature -> the check of those files (one per process)


def _paths(files: dict) -> list[Path]:
    return [Path(files["docs"]).resolve(), Path(files["queries"]).resolve(),
            *(Path(files["qrels"][s]).resolve() for s in sorted(files["qrels"]))]


def check_collection(files: dict) -> CheckedCollection:
    """Every file checked in full (`rqakit.config.collection_files`' dict), then every query judged
    by some split; the first problem is a one-line RqaError naming the file and the line."""
    signature = _signature(*_paths(files))
    if signature in _checked:
        return _checked[signature]
    docs, queries = check_docs(files["docs"]), check_queries(files["queries"])
    qrels = {split: check_qrels(path, queries, docs) for split, path in files["qrels"].items()}
    for split in qrels.values():
        if not split.ids:
            raise RqaError(f"{split.path} judges no query; add the split's qrels or remove the file")
    judged = set().union(*(q.ids for q in qrels.values()))
    for qid, line_no in queries.ids.items():
        if qid not in judged:
            named = " or ".join(str(q.path.name) for q in qrels.values())
            raise RqaError(f"{queries.path}, line {line_no}: query '{qid}' has no qrels in {named}; "
                           "judge it in a split's qrels or remove the line")
    _checked[signature] = CheckedCollection(docs, queries, qrels)
    return _checked[signature]


def register_declared(dataset_id: str) -> bool:
    """Register `dataset_id` when a loaded config resolved a split of its own files to it; False
    when no config did (then it is not a collection of `data.files`)."""
    files = LOCAL_COLLECTIONS.get(dataset_id)
    if files is None:
        return False
    docs, queries, *qrels = _paths(files)
    split = Path(files["qrels"][files["split"]]).resolve()
    if is_registered(dataset_id, docs, queries, split, *qrels):
        return True
    checked = check_collection(files)
    register_checked(dataset_id, checked.docs, checked.queries, checked.qrels[files["split"]],
                     judged_only=True, also=tuple(qrels))
    return True

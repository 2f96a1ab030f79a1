"""What every stage reads: a corpus streamed from ir_datasets, and query splits with qrels.

A `Corpus` never holds all documents in a Python list: it streams them from the dataset's
`docs_iter()` and fetches single documents from its `docs_store()`, so MS MARCO's 8.8M passages
cost no more memory than SciFact's 5k.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

from rqakit.data.irds import open_dataset, reading
from rqakit.errors import RqaError
from rqakit.types import Doc, passage_text


@dataclass
class Split:
    """One query set of a collection: texts, graded qrels and (for dpr-w100 NQ) answers."""

    dataset_id: str
    queries: dict[str, str]                       # query id -> text
    qrels: dict[str, dict[str, int]]              # query id -> {doc id -> relevance}
    answers: dict[str, list[str]] | None = None   # query id -> answer strings (NQ)
    name: str = ""                                # "train", "test", "val", ...
    # Known facts beyond the qrels, where a collection has them (the synthetic rqakit/toy):
    # {"unlabelled": {qid: [relevant docs missing from the qrels]}, "distractors": {qid: [...]}}.
    # "unlabelled" is the ground truth a denoising audit measures against.
    annotations: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def positives(self, qid: str, min_rel: int = 1) -> list[str]:
        """Doc ids judged relevant (relevance >= min_rel) for one query, best grade first."""
        judged = self.qrels.get(qid, {})
        return [d for d, r in sorted(judged.items(), key=lambda x: -x[1]) if r >= min_rel]

    def subset(self, qids, name: str | None = None) -> "Split":
        qids = [q for q in qids if q in self.queries]
        return Split(
            dataset_id=self.dataset_id,
            queries={q: self.queries[q] for q in qids},
            qrels={q: self.qrels[q] for q in qids if q in self.qrels},
            answers=None if self.answers is None else {q: self.answers[q] for q in qids if q in self.answers},
            name=name or self.name,
            annotations={kind: {q: table[q] for q in qids if q in table} for kind, table in self.annotations.items()},
        )


def _doc_text(record) -> str:
    """The passage body: `.text`, else the record's `default_text()`, else its first text field."""
    text = getattr(record, "text", None)
    if isinstance(text, str):
        return text
    if hasattr(record, "default_text"):
        return record.default_text()
    return next((v for v in record[1:] if isinstance(v, str)), "")


class Corpus:
    """The documents of an ir_datasets collection, streamed, with single-document lookups.

    BEIR and dpr-w100 records carry `.title` and `.text`; MS MARCO passages only `.text`. With
    `use_titles` the passage a model reads is "title text" (RocketQAv2's official passage input is
    `[CLS] title [SEP] para [SEP]`, titles included even for MS MARCO); without, the text alone.
    """

    LRU_SIZE = 4096

    def __init__(self, dataset_id: str, use_titles: bool = True):
        self.dataset_id = dataset_id
        self.use_titles = use_titles
        self._dataset = open_dataset(dataset_id)
        if not self._dataset.has_docs():
            raise RqaError(f"dataset '{dataset_id}' has no documents; pick an ID that provides docs")
        self._recent: OrderedDict[str, Doc] = OrderedDict()
        self._store = None  # opened once, on the first lookup

    def __getstate__(self):
        return {"dataset_id": self.dataset_id, "use_titles": self.use_titles}

    def __setstate__(self, state):
        self.__init__(state["dataset_id"], state["use_titles"])

    def __repr__(self):
        return f"Corpus({self.dataset_id!r}, use_titles={self.use_titles})"

    def __len__(self) -> int:
        with reading(self.dataset_id):
            count = self._dataset.docs_count()
            return count if count is not None else self._dataset.docs_store().count()

    def known_len(self) -> int | None:
        """The document count when the collection records it (cheap), else None (a progress bar's total)."""
        with reading(self.dataset_id):
            return self._dataset.docs_count()

    def _to_doc(self, record) -> Doc:
        title = getattr(record, "title", "") if self.use_titles else ""
        return Doc(record.doc_id, title if isinstance(title, str) else "", _doc_text(record))

    def iter_docs(self) -> Iterator[Doc]:
        """Every document once, in the collection's order, streamed from `docs_iter()`."""
        with reading(self.dataset_id):
            for record in self._dataset.docs_iter():
                yield self._to_doc(record)

    def get(self, doc_id: str) -> Doc:
        """One document by id (recent lookups are cached); RqaError if the id is unknown."""
        return self.get_many([doc_id])[0]

    def get_many(self, doc_ids) -> list[Doc]:
        """Documents in the order of `doc_ids`; RqaError naming the first id not in the collection."""
        doc_ids = list(doc_ids)
        docs = {d: self._recent[d] for d in doc_ids if d in self._recent}
        missing = [d for d in dict.fromkeys(doc_ids) if d not in docs]
        if missing:
            with reading(self.dataset_id):
                if self._store is None:
                    self._store = self._dataset.docs_store()
                found = self._store.get_many(missing)
            for doc_id in missing:
                if doc_id not in found:
                    raise RqaError(f"doc id '{doc_id}' is not in {self.dataset_id}; check the id against its qrels or run")
                docs[doc_id] = self._to_doc(found[doc_id])
        for doc in docs.values():
            self._recent[doc.doc_id] = doc
            self._recent.move_to_end(doc.doc_id)
        while len(self._recent) > self.LRU_SIZE:
            self._recent.popitem(last=False)
        return [docs[d] for d in doc_ids]

    def passage_text(self, doc: Doc) -> str:
        """The text a model reads (`rqakit.types.passage_text`): "title text", or the text alone."""
        return passage_text(doc)

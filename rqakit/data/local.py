"""Local files as an ir_datasets collection: `register_local(name, docs, queries, qrels)` -> "local/<name>".

Formats (UTF-8 text; data/README.md has examples):
- docs: TSV `doc_id<TAB>text` or `doc_id<TAB>title<TAB>text`, no header; or JSONL, one
  `{"_id" | "doc_id", "title" (optional), "text"}` object per line (BEIR's corpus.jsonl).
- queries: TSV `query_id<TAB>text`; or JSONL `{"_id" | "query_id", "text"}` (BEIR's queries.jsonl),
  optionally with `"answers": ["...", ...]` on every line (an open-domain QA set such as NQ: the
  split is then scored by answers, DPR's has_answer, and answer-bearing passages are no negatives).
- qrels: TREC `query_id 0 doc_id relevance`; or BEIR TSV with the header `query-id corpus-id score`.

Every file is read once in full before anything is registered, and the first malformed line
raises RqaError naming the file, the line and what was expected. The files are then served by
ir_datasets' own format classes (TsvDocs, JsonlDocs, TsvQueries, JsonlQueries, TrecQrels,
BeirQrels); the document store is built under `IR_DATASETS_HOME/local/docstores/`, never beside
the user's files.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import ir_datasets
from ir_datasets.datasets.base import Dataset, FilteredQueries
from ir_datasets.datasets.beir import BeirQrels
from ir_datasets.formats import GenericDoc, GenericQuery, JsonlDocs, JsonlQueries, TrecQrels, TsvDocs, TsvQueries
from ir_datasets.indices import DEFAULT_DOCSTORE_OPTIONS, PickleLz4FullStore
from ir_datasets.util import LocalDownload

from rqakit.errors import RqaError
from rqakit.types import passage_text

BEIR_QRELS_HEADER = "query-id\tcorpus-id\tscore"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)*")
_registered: dict[str, tuple] = {}   # dataset id -> signature of the files it was registered from


class AnswerQuery(NamedTuple):
    query_id: str
    text: str
    answers: tuple


class TitledDoc(NamedTuple):
    doc_id: str
    title: str
    text: str

    def default_text(self):
        """"title text" (ir_datasets' record text), as `rqakit.types.passage_text`."""
        return passage_text(self)


@dataclass
class _Checked:
    """What validation learned about one file."""

    path: Path
    layout: str                          # "tsv" | "jsonl" | "trec" | "beir"
    ids: dict = field(default_factory=dict)   # record id -> line number
    id_key: str = ""                     # JSONL id field
    titled: bool = False                 # docs carry titles
    answers: bool = False                # JSONL queries carry "answers"
    rows: int = 0                        # qrels lines
    positive: set = field(default_factory=set)   # qrels: query ids with a relevance above 0


def _malformed(path: Path, line_no: int, what: str) -> RqaError:
    return RqaError(f"{path}, line {line_no}: {what}; fix the file (formats: data/README.md)")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, content without the line break) for every line, blank ones included."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                yield line_no, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise _malformed(path, line_no, "expected UTF-8 text") from None


def _existing(path, role: str) -> Path:
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise RqaError(f"{role} file {path} does not exist; pass the path of a {role} file")
    return path


def _is_jsonl(path: Path) -> bool:
    first = next((text for _, text in _lines(path) if text.strip()), "")
    return first.lstrip().startswith("{")


def _check_id(checked: _Checked, line_no: int, record_id, kind: str) -> None:
    if not isinstance(record_id, str) or not record_id or any(c.isspace() for c in record_id):
        raise _malformed(checked.path, line_no, f"expected a {kind} id without spaces, got {record_id!r}")
    if record_id in checked.ids:
        raise _malformed(checked.path, line_no, f"{kind} id '{record_id}' repeats line {checked.ids[record_id]}")
    checked.ids[record_id] = line_no


def _check_tsv(path: Path, kind: str, widths: tuple[int, ...], expected: str) -> _Checked:
    """Tab-separated rows, all as wide as the first; blank lines are skipped (as ir_datasets does)."""
    checked, width = _Checked(path, "tsv"), None
    for line_no, text in _lines(path):
        if not text:
            continue
        cols = text.split("\t")
        if width is None and len(cols) not in widths:
            raise _malformed(path, line_no, f"expected {expected}, got {len(cols)} column(s)")
        if width is not None and len(cols) != width:
            raise _malformed(path, line_no, f"expected {width} tab-separated columns like the first row, got {len(cols)}")
        width = len(cols)
        _check_id(checked, line_no, cols[0], kind)
        if not cols[-1].strip():
            raise _malformed(path, line_no, f"expected a non-empty text in column {width}")
    checked.titled = width == 3
    return checked


def _check_jsonl(path: Path, kind: str, id_keys: tuple[str, str]) -> _Checked:
    """One JSON object per line with a string id (one of `id_keys`, the same on every line) and text."""
    checked = _Checked(path, "jsonl")
    for line_no, text in _lines(path):
        if not text.strip():
            raise _malformed(path, line_no, "expected one JSON object per line, got a blank line")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _malformed(path, line_no, f"expected one JSON object per line, got invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise _malformed(path, line_no, f"expected a JSON object, got {type(record).__name__}")
        if not checked.id_key:
            checked.id_key = next((k for k in id_keys if k in record), "")
            checked.titled = "title" in record
            checked.answers = kind == "query" and "answers" in record
        if checked.id_key not in record:
            raise _malformed(path, line_no, f"expected a '{checked.id_key or id_keys[0]}' field"
                             + ("" if checked.id_key else f" (or '{id_keys[1]}')"))
        _check_id(checked, line_no, record[checked.id_key], kind)
        if not isinstance(record.get("text"), str):
            raise _malformed(path, line_no, "expected a string 'text' field")
        if checked.titled and not isinstance(record.get("title"), str):
            raise _malformed(path, line_no, "expected a string 'title' field like the first line")
        answers = record.get("answers")
        if checked.answers and not (isinstance(answers, list) and all(isinstance(a, str) for a in answers)):
            raise _malformed(path, line_no, "expected an 'answers' list of strings like the first line")
    if not checked.ids:
        raise RqaError(f"{path} holds no {kind}s; pass a non-empty file")
    return checked


def check_docs(path) -> _Checked:
    """Validate a docs file (TSV or JSONL, told apart by a leading '{')."""
    path = _existing(path, "docs")
    if _is_jsonl(path):
        return _check_jsonl(path, "doc", ("_id", "doc_id"))
    checked = _check_tsv(path, "doc", (2, 3), "2 or 3 tab-separated columns (doc_id, [title,] text)")
    if not checked.ids:
        raise RqaError(f"{path} holds no docs; pass a non-empty file")
    return checked


def check_queries(path) -> _Checked:
    """Validate a queries file (TSV or JSONL)."""
    path = _existing(path, "queries")
    if _is_jsonl(path):
        return _check_jsonl(path, "query", ("_id", "query_id"))
    checked = _check_tsv(path, "query", (2,), "2 tab-separated columns (query_id, text)")
    if not checked.ids:
        raise RqaError(f"{path} holds no queries; pass a non-empty file")
    return checked


def check_qrels(path, queries: _Checked, docs: _Checked) -> _Checked:
    """Validate TREC or BEIR qrels: integer grades, ids that exist in the queries and docs files."""
    path = _existing(path, "qrels")
    checked = _Checked(path, "trec")
    for line_no, text in _lines(path):
        if line_no == 1 and text.strip().startswith("query-id"):
            if text.strip() != BEIR_QRELS_HEADER:
                raise _malformed(path, line_no, "expected the BEIR header 'query-id<TAB>corpus-id<TAB>score'")
            checked.layout = "beir"
            continue
        if not text:
            continue
        cols = text.split()
        if checked.layout == "trec" and len(cols) != 4:
            raise _malformed(path, line_no, f"expected TREC qrels 'query_id 0 doc_id relevance' (4 columns), got {len(cols)}")
        if checked.layout == "beir" and len(cols) != 3:
            raise _malformed(path, line_no, f"expected 3 columns 'query-id corpus-id score', got {len(cols)}")
        qid, doc_id, grade = cols[0], cols[-2], cols[-1]
        if not re.fullmatch(r"-?\d+", grade):
            raise _malformed(path, line_no, f"expected an integer relevance in the last column, got '{grade}'")
        if qid not in queries.ids:
            raise _malformed(path, line_no, f"query id '{qid}' is not in {queries.path}")
        if doc_id not in docs.ids:
            raise _malformed(path, line_no, f"doc id '{doc_id}' is not in {docs.path}")
        checked.ids.setdefault(qid, line_no)
        checked.rows += 1
        if int(grade) > 0:
            checked.positive.add(qid)
    return checked


def _signature(*paths: Path) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


def _docstore_path(docs: _Checked) -> str:
    digest = hashlib.sha1(repr(_signature(docs.path)).encode()).hexdigest()[:16]
    return str(ir_datasets.util.home_path() / "local" / "docstores" / f"{docs.path.stem}-{digest}.pklz4")


class _LocalTsvDocs(TsvDocs):
    """TsvDocs with its store under IR_DATASETS_HOME and the count known from validation."""

    def __init__(self, path: Path, doc_cls, count: int, store_path: str):
        super().__init__(LocalDownload(path, mkdir=False), doc_cls, count_hint=count)
        self._count, self._store_path = count, store_path

    def docs_count(self):
        return self._count

    def docs_store(self, field="doc_id", options=DEFAULT_DOCSTORE_OPTIONS):
        return PickleLz4FullStore(path=self._store_path, init_iter_fn=self.docs_iter, data_cls=self._cls,
                                  lookup_field=field, index_fields=["doc_id"], count_hint=self._count, options=options)


class _LocalJsonlDocs(JsonlDocs):
    def __init__(self, path: Path, doc_cls, mapping: dict, count: int, store_path: str):
        super().__init__(LocalDownload(path, mkdir=False), doc_cls, mapping=mapping, count_hint=count,
                         docstore_path=store_path)
        self._count = count

    def docs_count(self):
        return self._count


def _docs_component(docs: _Checked):
    doc_cls = TitledDoc if docs.titled else GenericDoc
    store = _docstore_path(docs)
    if docs.layout == "tsv":
        return _LocalTsvDocs(docs.path, doc_cls, len(docs.ids), store)
    mapping = {"doc_id": docs.id_key, "text": "text"} | ({"title": "title"} if docs.titled else {})
    return _LocalJsonlDocs(docs.path, doc_cls, mapping, len(docs.ids), store)


def _queries_component(queries: _Checked):
    source = LocalDownload(queries.path, mkdir=False)
    if queries.layout == "tsv":
        return TsvQueries(source, GenericQuery)
    if queries.answers:
        return JsonlQueries(source, AnswerQuery, mapping={"query_id": queries.id_key, "text": "text", "answers": "answers"})
    return JsonlQueries(source, GenericQuery, mapping={"query_id": queries.id_key, "text": "text"})


def _qrels_component(qrels: _Checked):
    source = LocalDownload(qrels.path, mkdir=False)
    return BeirQrels(source, qrels_defs={}) if qrels.layout == "beir" else TrecQrels(source, {})


def register_local(name: str, docs, queries=None, qrels=None) -> str:
    """Validate the files, register them as "local/<name>" in ir_datasets, return that ID.

    Registering the same name again with the same (unchanged) files is a no-op; with other or
    edited files it replaces the earlier registration.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RqaError(f"local dataset name {name!r} must be letters, digits, '.', '_', '-' (and '/'), e.g. 'mydocs/train'")
    if qrels is not None and queries is None:
        raise RqaError("qrels need their queries: pass queries= as well")
    dataset_id = f"local/{name}"
    checked_docs = check_docs(docs)
    checked_queries = check_queries(queries) if queries is not None else None
    checked_qrels = check_qrels(qrels, checked_queries, checked_docs) if qrels is not None else None
    return register_checked(dataset_id, checked_docs, checked_queries, checked_qrels)


def is_registered(dataset_id: str, *paths: Path) -> bool:
    """`dataset_id` is registered from these files, unchanged since."""
    return _registered.get(dataset_id) == _signature(*paths)


def register_checked(dataset_id: str, docs: _Checked, queries: _Checked | None = None, qrels: _Checked | None = None,
                     *, judged_only: bool = False, also: tuple = ()) -> str:
    """Register files already checked as `dataset_id`; `judged_only` keeps the queries the qrels
    judge (a BEIR split: one queries file, qrels per split); `also`: other files the registration
    depends on (re-registered when they change)."""
    checked = [c for c in (docs, queries, qrels) if c is not None]
    signature = _signature(*(c.path for c in checked), *also)
    if _registered.get(dataset_id) == signature:
        return dataset_id
    if dataset_id in set(ir_datasets.registry):
        if dataset_id not in _registered:
            raise RqaError(f"dataset '{dataset_id}' is already registered by another library; pick another name")
        del ir_datasets.registry._registered[dataset_id]   # Registry has no public unregister
    components = [_docs_component(docs)]
    if queries is not None:
        component = _queries_component(queries)
        if judged_only and qrels is not None:
            judged = frozenset(qrels.ids)
            component = FilteredQueries(component, lambda: judged)
        components.append(component)
    if qrels is not None:
        components.append(_qrels_component(qrels))
    ir_datasets.registry.register(dataset_id, Dataset(*components))
    _registered[dataset_id] = signature
    return dataset_id

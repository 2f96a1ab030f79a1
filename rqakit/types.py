"""The plain data every layer shares: a document, a run, and the text a model reads of a document.

    Doc("d1", "Title", "Body.")            # title "" when the collection has none or titles are off
    passage_text(Doc("d1", "T", "Body."))  # "T Body."
    run: Run = {"q1": {"d1": 12.5, "d7": 11.0}}

Whether titles are read is decided once, by the corpus (`data.use_titles`): a `Corpus` with titles
off hands out docs whose title is "". Every model, BM25 and every text view follow the doc.
"""
from __future__ import annotations

from typing import NamedTuple


class Doc(NamedTuple):
    doc_id: str
    title: str   # "" when the collection has no titles or titles are switched off
    text: str


Run = dict[str, dict[str, float]]  # query id -> {doc id -> score}


def passage_text(doc: Doc) -> str:
    """"title text" joined by one space when the doc has a title, else the text alone.

    BM25 indexes this, the cross-encoder reads it after the query (`[CLS] q [SEP] title text [SEP]`,
    no [SEP] between title and text), and sentence-transformers encodes it. The dual encoder alone
    keeps title and text apart (`[CLS] title [SEP] text [SEP]`, official reader).
    """
    return f"{doc.title} {doc.text}" if doc.title else doc.text

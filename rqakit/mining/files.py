"""List files: the lists `augment` writes (Parquet) and the selection joint training reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rqakit.atomic import atomic_path
from rqakit.errors import RqaError

LIST_KINDS = ("undenoised", "denoised")
LIST_COLUMNS = ("query_id", "kind", "doc_ids", "labels", "ce_scores", "positive_source", "fallback")

def _check_lists_frame(lists: pd.DataFrame) -> None:
    missing = [c for c in LIST_COLUMNS if c not in lists.columns]
    if missing:
        raise RqaError(f"lists table lacks columns {', '.join(missing)}; build it with rqakit.mining.build_lists")


@dataclass
class TrainingLists:
    """The joint-training set as arrays: list i is query `query_ids[i]` with the passages
    `doc_ids[doc_index[i]]` (positive at 0) and the warm CE's logits `ce_scores[i]` (NaN where
    unscored). No Python object per list entry: MS MARCO's 1.0M lists of 128 peak at about 4.4 GB
    while read, where `read_lists`' frame of Python lists would take about 45 GB."""

    query_ids: np.ndarray   # (n,) object
    doc_index: np.ndarray   # (n, m) int32 into doc_ids
    doc_ids: np.ndarray     # (distinct passages,) object
    ce_scores: np.ndarray   # (n, m) float64

    def __len__(self) -> int:
        return len(self.query_ids)

    def docs(self, i: int) -> list[str]:
        return self.doc_ids[self.doc_index[i]].tolist()


def training_lists(path: str | Path, *, use_denoised: bool = True, list_size: int | None = None) -> TrainingLists:
    """The lists joint training reads from a `write_lists` file: undenoised + denoised lists, or
    undenoised only (Table 4 "w/o denoised"), in file order.

    list_size: truncate every list to m' (index 0 + its first m'-1 negatives) for the list-size study
    (Figure 4); negatives are stored in sampled order, so the first m'-1 are a uniform subsample.
    """
    path = Path(path)
    if not path.exists():
        raise RqaError(f"no lists file at {path}; run the augment stage first")
    table = pq.read_table(path, columns=["query_id", "kind", "doc_ids", "ce_scores"])
    kinds = LIST_KINDS if use_denoised else ("undenoised",)
    table = table.filter(pc.is_in(table["kind"], value_set=pa.array(kinds)))
    ids, scores = table["doc_ids"].combine_chunks(), table["ce_scores"].combine_chunks()
    starts, lengths = ids.offsets.to_numpy()[:-1], pc.list_value_length(ids).to_numpy(zero_copy_only=False)
    shortest = int(lengths.min()) if len(lengths) else (list_size or 0)
    if list_size is None:
        if len(lengths) and int(lengths.max()) != shortest:
            raise RqaError(f"{path} holds lists of {shortest} to {int(lengths.max())} passages; give a list_size")
        list_size = shortest
    elif not 2 <= list_size <= shortest:
        raise RqaError(f"list_size {list_size} must be between 2 and the stored list size {shortest}; "
                       "rebuild the lists with a larger augment.list_size")
    head = np.arange(list_size)
    encoded = pc.dictionary_encode(ids.values)   # every id once, each list row as indices into them
    return TrainingLists(
        query_ids=table["query_id"].to_numpy(),
        doc_index=encoded.indices.to_numpy()[starts[:, None] + head].astype(np.int32),
        doc_ids=encoded.dictionary.to_numpy(zero_copy_only=False),
        ce_scores=scores.values.to_numpy(zero_copy_only=False)[scores.offsets.to_numpy()[:-1, None] + head])


def write_lists(lists: pd.DataFrame, path: str | Path) -> Path:
    """Write the lists table to Parquet atomically (temporary file + rename)."""
    _check_lists_frame(lists)
    with atomic_path(path) as tmp:
        lists.to_parquet(tmp, index=False)
    return Path(path)


def read_lists(path: str | Path) -> pd.DataFrame:
    """Read a lists table written by `write_lists`, with Python lists in the list columns."""
    path = Path(path)
    if not path.exists():
        raise RqaError(f"no lists file at {path}; run the augment stage first")
    lists = pd.read_parquet(path)
    _check_lists_frame(lists)
    lists["doc_ids"] = lists["doc_ids"].map(lambda v: [str(d) for d in v])
    lists["labels"] = lists["labels"].map(lambda v: [int(x) for x in v])
    lists["ce_scores"] = lists["ce_scores"].map(lambda v: [float(x) for x in v])
    lists["fallback"] = lists["fallback"].astype(bool)
    return lists

"""List files: the lists `augment` writes (Parquet) and the selection joint training reads."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rqakit.atomic import atomic_path
from rqakit.errors import RqaError

LIST_KINDS = ("undenoised", "denoised")
LIST_COLUMNS = ("query_id", "kind", "doc_ids", "labels", "ce_scores", "positive_source", "fallback")

def _check_lists_frame(lists: pd.DataFrame) -> None:
    missing = [c for c in LIST_COLUMNS if c not in lists.columns]
    if missing:
        raise RqaError(f"lists table lacks columns {', '.join(missing)}; build it with rqakit.mining.build_lists")


def select_lists(lists: pd.DataFrame, *, use_denoised: bool = True, list_size: int | None = None) -> pd.DataFrame:
    """The joint-training set: undenoised + denoised lists, or undenoised only (Table 4 "w/o denoised").

    list_size: truncate every list to m' (index 0 + its first m'-1 negatives) for the list-size study
    (Figure 4); negatives are stored in sampled order, so the first m'-1 are a uniform subsample.
    """
    _check_lists_frame(lists)
    kinds = LIST_KINDS if use_denoised else ("undenoised",)
    selected = lists[lists["kind"].isin(kinds)].reset_index(drop=True)
    if list_size is None:
        return selected
    current = int(selected["doc_ids"].map(len).min()) if len(selected) else list_size
    if not 2 <= list_size <= current:
        raise RqaError(f"list_size {list_size} must be between 2 and the stored list size {current}; "
                       "rebuild the lists with a larger augment.list_size")
    selected = selected.copy()
    for column in ("doc_ids", "labels", "ce_scores"):
        selected[column] = selected[column].map(lambda values: list(values)[:list_size])
    return selected


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

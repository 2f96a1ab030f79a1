"""Data: every collection, public, synthetic (`rqakit/toy`) or local (`local/<name>`), loads
through ir_datasets. Importing this package changes nothing; the first dataset opened
(`rqakit.data.irds.open_dataset`) registers the toy collection and makes a file missing from the
ir_datasets cache an `RqaError` that names it."""
from rqakit.data.collection import Corpus, Split
from rqakit.data.loading import dataset_stats, holdout, load_corpus, load_split, train_eval_splits
from rqakit.data.local import register_local
from rqakit.types import Doc

__all__ = ["Corpus", "Doc", "Split", "dataset_stats", "holdout", "load_corpus", "load_split",
           "register_local", "train_eval_splits"]

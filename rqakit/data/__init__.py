"""Data: every collection, public, synthetic (`rqakit/toy`) or local (`local/<name>`), loads
through ir_datasets. Importing this package registers the toy collection and makes a file that
is missing from the ir_datasets cache an `RqaError` that names it (rqakit.data.irds)."""
from rqakit.data import toy
from rqakit.data.collection import Corpus, Doc, Split
from rqakit.data.irds import install_download_guard
from rqakit.data.loading import dataset_stats, holdout, load_corpus, load_split, train_eval_splits
from rqakit.data.local import register_local

install_download_guard()
toy.register()

__all__ = ["Corpus", "Doc", "Split", "dataset_stats", "holdout", "load_corpus", "load_split",
           "register_local", "toy", "train_eval_splits"]

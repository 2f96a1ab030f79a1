"""The kit's one door to ir_datasets: dataset lookup by ID, and offline-aware cache reads.

ir_datasets downloads a file the first time a component needs it, unless the file is already
at its cache path under `IR_DATASETS_HOME` (it trusts a file that is in place and checks no hash).
Every download goes through `ir_datasets.util.Download.path` (or `.stream` for the few files
that are streamed without a cache path), which knows the file's cache path and URL. The kit wraps
those two methods once, on `import rqakit.data`, so that a file that is missing from the cache
either

- is never fetched when `RQAKIT_OFFLINE=1` (or `true`/`yes`) is set, or
- is fetched as usual, and a failed fetch of a file with a cache path (no network, host down)
  is reported as

`MissingCacheFile`: an `RqaError` that names the missing file and points at a pre-populated
`IR_DATASETS_HOME` (data/README.md). A streamed file (no cache path) is only stopped by
`RQAKIT_OFFLINE`; its network errors reach the caller as ir_datasets raises them. Files that
are cached, or that ir_datasets can copy from a local mirror (`IR_DATASETS_HOME/downloads/<md5>`),
pass through untouched.
"""
from __future__ import annotations

import contextlib
import difflib
import os

import ir_datasets
from ir_datasets.util.download import Download, LocalDownload

from rqakit.env import environment
from rqakit.errors import RqaError

OFFLINE_ENV = "RQAKIT_OFFLINE"
CACHE_HELP = "set IR_DATASETS_HOME to a folder that holds a pre-populated cache (see data/README.md)"


class MissingCacheFile(RqaError):
    """A file a dataset needs is not in the ir_datasets cache and was not (or could not be) fetched."""

    def __init__(self, path, url, reason: str):
        self.path, self.url = path, url
        target = str(path) if path is not None else url
        super().__init__(f"{target} is missing from the ir_datasets cache and {reason}; {CACHE_HELP}")


def offline() -> bool:
    """True when `RQAKIT_OFFLINE` forbids downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@contextlib.contextmanager
def no_downloads():
    """Within the block a file missing from the cache raises `MissingCacheFile`, whatever the
    environment says: for reads that only look at what is already here (`rqakit plan`)."""
    with environment(**{OFFLINE_ENV: "1"}):
        yield


def metadata_counts(dataset_id: str) -> dict:
    """{"docs", "queries", "qrels", "positive_levels_only"} from the metadata ir_datasets ships
    with its registry (nothing read from the cache, nothing downloaded); RqaError where a count
    is not in it."""
    dataset = open_dataset(dataset_id)
    try:
        counts = {"docs": dataset.docs_count(), "queries": dataset.queries_count(), "qrels": dataset.qrels_count()}
    except Exception as exc:  # a count the metadata lacks makes ir_datasets read (or fetch) the files
        raise RqaError(f"dataset '{dataset_id}': its counts are not in ir_datasets' metadata ({type(exc).__name__})") from None
    if any(v is None for v in counts.values()):
        raise RqaError(f"dataset '{dataset_id}': its counts are not in ir_datasets' metadata")
    counts["positive_levels_only"] = all(level > 0 for level in (dataset.qrels_defs() or {}))
    return counts


def _remote_url(download: Download) -> str:
    urls = [getattr(m, "url", None) or getattr(m, "uri", None) for m in download.mirrors]
    return next((u for u in urls if u), "a remote source")


def _has_local_copy(download: Download) -> bool:
    """A cached file, or a local mirror that ir_datasets copies from without the network."""
    cache_path = download._cache_path
    if cache_path is not None and cache_path != os.devnull and os.path.exists(cache_path):
        return True
    return any(isinstance(m, LocalDownload) and m._path.exists() for m in download.mirrors)


def _fetch(download: Download, fetch):
    url = _remote_url(download)
    if offline():
        raise MissingCacheFile(download._cache_path, url, f"downloads are off ({OFFLINE_ENV}=1)")
    try:
        return fetch()
    except RqaError:
        raise
    except Exception as exc:  # requests, OSError, hash mismatch: all mean "not available here"
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        reason = f"its download from {url} failed ({type(exc).__name__}{': ' + detail if detail else ''})"
        raise MissingCacheFile(download._cache_path, url, reason) from exc


def install_download_guard() -> None:
    """Wrap `Download.path` / `Download.stream` once (idempotent); see the module docstring."""
    if getattr(Download.path, "rqakit_guard", False):
        return
    unguarded_path, unguarded_stream = Download.path, Download.stream

    def path(self, force=True):
        if not force or self._path is not None or _has_local_copy(self):
            return unguarded_path(self, force)
        return _fetch(self, lambda: unguarded_path(self, force))

    def stream(self):
        if self._stream and offline():
            raise MissingCacheFile(None, _remote_url(self), f"downloads are off ({OFFLINE_ENV}=1)")
        return unguarded_stream(self)

    path.rqakit_guard = stream.rqakit_guard = True
    Download.path, Download.stream = path, stream


@contextlib.contextmanager
def reading(dataset_id: str):
    """Prefix a missing-cache error raised while reading `dataset_id` with the dataset's ID."""
    try:
        yield
    except MissingCacheFile as exc:
        raise RqaError(f"dataset '{dataset_id}': {exc}") from exc


def prepare() -> None:
    """Guard ir_datasets' downloads and register the kit's own collection `rqakit/toy` (idempotent).

    Called by `open_dataset`, the one door through which the kit opens a dataset, so importing
    `rqakit.data` changes nothing in ir_datasets until a dataset is opened.
    """
    from rqakit.data import toy

    install_download_guard()
    toy.register()


def known_ids() -> list[str]:
    prepare()
    return list(ir_datasets.registry)


def open_dataset(dataset_id: str):
    """`ir_datasets.load(dataset_id)`, with an unknown ID named with up to 3 close matches; a split
    of a profile's own files (`data.files`) is registered here on first use (rqakit.data.files)."""
    prepare()
    if dataset_id.startswith("local/"):
        from rqakit.data.files import register_declared

        register_declared(dataset_id)
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        pass
    except ImportError as exc:   # a dataset whose reader needs an optional package
        raise RqaError(f"dataset '{dataset_id}' needs a package that is not installed "
                       f"(requirements.lock pins the kit's): {exc}") from None
    message = f"unknown dataset '{dataset_id}'"
    matches = difflib.get_close_matches(dataset_id, known_ids(), n=3)
    if matches:
        message += f"; did you mean: {', '.join(matches)}?"
    elif dataset_id.startswith("local/"):
        message += ("; name your files in the profile (data.files, `rqakit init`) or register them with "
                    "rqakit.data.register_local (see data/README.md)")
    else:
        message += "; list the known IDs with `ir_datasets list` or see https://ir-datasets.com"
    raise RqaError(message)


def child_ids(dataset_id: str, limit: int = 3) -> list[str]:
    """Registered IDs one or more levels below `dataset_id`, e.g. beir/scifact -> beir/scifact/test."""
    return sorted(i for i in known_ids() if i.startswith(dataset_id + "/"))[:limit]

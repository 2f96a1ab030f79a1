"""Files and folders that appear whole or not at all: written under a temporary sibling name
(`.<name>.tmp-<pid>`) and renamed into place, so a killed process never leaves a partial file
that looks complete.

    with atomic_path(path) as tmp:       # write tmp (a file or a folder) ...
        save(tmp)                         # ... renamed to `path` on success, removed on error
    write_json(path, obj)
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """`.<name>.tmp-<pid>` beside `path`."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` when the block succeeds.

    An existing file is replaced; an existing folder is removed only once the new one is
    complete. On any error (or Ctrl-C) the temporary path is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def remove_stale(folder: str | os.PathLike, pattern: str = ".*.tmp-*") -> list[Path]:
    """Remove the temporaries in `folder` whose writing process is gone (a live pid's are kept)."""
    removed = []
    for tmp in Path(folder).glob(pattern):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(tmp)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    """Indented, key-sorted JSON; numpy scalars and paths are written as numbers and strings."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n")


def _plain(value):
    if hasattr(value, "item"):   # numpy scalars
        return value.item()
    return str(value)

"""Environment variables set for a block and restored after it."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environment(**values: str):
    """Set each `name=value` for the block, then restore it as it was (unset where it was unset)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

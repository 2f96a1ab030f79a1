"""Where a stage's wall time goes: training steps, corpus and query encoding, cross-encoder
scoring, search, evaluation, checkpoints. `artifacts.run_stage` writes the split into the manifest.

    with measuring() as split:                   # run_stage, around a stage's build
        with timed("training steps"): ...        # the library's long loops
    split -> {"training steps": 12.3, ..., "other": 0.8}

Each second counts once, for the innermost timed block, except inside a block opened with
`absorb=True`: validation curves drawn during training count as "evaluation", not as the encoding
and scoring they do. Outside `measuring` nothing is recorded.
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict

_splits: list[dict] = []   # one accumulator per `measuring` block, innermost last
_open: list[list] = []     # [part, seconds of timed children, absorbs] of the open timed blocks


@contextlib.contextmanager
def timed(part: str, absorb: bool = False):
    """Count the block's own wall time (less its timed children's) as `part`."""
    if not _splits or any(block[2] for block in _open):
        yield
        return
    block = [part, 0.0, absorb]
    _open.append(block)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _open[:] = [b for b in _open if b is not block]
        if _splits:
            _splits[-1][part] += elapsed - block[1]
        if _open:
            _open[-1][1] += elapsed


def timed_as(part: str):
    """Decorator: every call of the function is `timed(part)`."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with timed(part):
                return fn(*args, **kwargs)
        return inner
    return wrap


@contextlib.contextmanager
def measuring():
    """Collect the `timed` parts of the block -> a dict of seconds, "other" the rest of its time."""
    split: dict = defaultdict(float)
    saved = list(_open)
    _open.clear()
    _splits.append(split)
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        _splits.pop()
        _open[:] = saved
        out.update({part: round(seconds, 3) for part, seconds in sorted(split.items())})
        out["other"] = round(max(0.0, time.perf_counter() - start - sum(split.values())), 3)


def live_split() -> dict[str, float]:
    """The innermost `measuring` block's parts so far (a copy; empty outside one). Safe to call from
    another thread: a part being added meanwhile is retried."""
    for _ in range(5):
        try:
            return dict(_splits[-1]) if _splits else {}
        except (RuntimeError, IndexError):  # the dict grew, or the block closed, while it was copied
            continue
    return {}

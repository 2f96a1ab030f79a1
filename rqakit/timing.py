"""Where a stage's wall time goes: training steps, corpus and query encoding, cross-encoder
scoring, search, evaluation, checkpoints. `artifacts.run_stage` writes the split into the manifest.

    with measuring() as split:                   # run_stage, around a stage's build
        with timed("training steps"): ...        # the library's long loops
    split -> {"training steps": 12.3, ..., "other": 0.8}

Each second counts once, for the innermost timed block, except inside a block opened with
`absorb=True`: validation curves drawn during training count as "evaluation", not as the encoding
and scoring they do. Outside `measuring` nothing is recorded. The CPU seconds of the process (every
thread) are split the same way (`measuring(cpu=...)`, `live_cpu_split`): a part's CPU seconds over
threads x its wall seconds is the share of the cores it had while other jobs ran (`rqakit.cost`).
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict

_splits: list[dict] = []   # one accumulator per `measuring` block, innermost last: wall seconds
_cpu_splits: list[dict] = []   # the same blocks' CPU seconds
_open: list[list] = []     # [part, wall and CPU seconds of timed children, absorbs] of the open timed blocks


@contextlib.contextmanager
def timed(part: str, absorb: bool = False):
    """Count the block's own wall and CPU time (less its timed children's) as `part`."""
    if not _splits or any(block[3] for block in _open):
        yield
        return
    block = [part, 0.0, 0.0, absorb]
    _open.append(block)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        _open[:] = [b for b in _open if b is not block]
        if _splits:
            _splits[-1][part] += elapsed - block[1]
            _cpu_splits[-1][part] += cpu - block[2]
        if _open:
            _open[-1][1] += elapsed
            _open[-1][2] += cpu


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
def measuring(cpu: dict | None = None):
    """Collect the `timed` parts of the block -> a dict of seconds, "other" the rest of its time;
    `cpu`, where given, receives the same split of the process's CPU seconds."""
    split: dict = defaultdict(float)
    cpu_split: dict = defaultdict(float)
    saved = list(_open)
    _open.clear()
    _splits.append(split)
    _cpu_splits.append(cpu_split)
    out: dict = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        _splits.pop()
        _cpu_splits.pop()
        _open[:] = saved
        for into, parts, total in ((out, split, time.perf_counter() - start),
                                   (cpu, cpu_split, time.process_time() - cpu_start)):
            if into is not None:
                into.update({part: round(seconds, 3) for part, seconds in sorted(parts.items())})
                into["other"] = round(max(0.0, total - sum(parts.values())), 3)


def _live(splits: list[dict]) -> dict[str, float]:
    for _ in range(5):
        try:
            return dict(splits[-1]) if splits else {}
        except (RuntimeError, IndexError):  # the dict grew, or the block closed, while it was copied
            continue
    return {}


def live_split() -> dict[str, float]:
    """The innermost `measuring` block's parts so far (a copy; empty outside one). Safe to call from
    another thread: a part being added meanwhile is retried."""
    return _live(_splits)


def live_cpu_split() -> dict[str, float]:
    """`live_split`'s CPU seconds."""
    return _live(_cpu_splits)

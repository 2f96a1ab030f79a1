"""Progress of long loops, shown by the `rqakit reproduce` process while a notebook kernel runs them.

The kernel's own progress bars stay inside the executed notebook. So the stages and loops also
append one JSON line per event to the file named by `$RQAKIT_PROGRESS` (when it is set), and
`rqakit reproduce` reads the file while the chapter runs and prints a line per event:

    {"kind": "stage", "name": "warmup_de", "state": "running"}
    {"kind": "bar", "desc": "warmup_de", "n": 40, "total": 210, "start": 0, "elapsed": 3.9}

    [reproduce] 03_warmup · warmup_de: 40/210 [19%] 0:04 elapsed, ~0:17 left

`Bar` is tqdm (the notebook widget in a kernel) that also writes its count at most once per
`EVERY_S`, and always when it reaches its total or closes. Without `$RQAKIT_PROGRESS` nothing
is written. `Echo` prints a loop's line at most every `RQAKIT_PROGRESS_EVERY` seconds (10) and
skips loops that end within `MIN_LOOP_S`. Stages write "running"/"done" events
(`artifacts.run_stage`), training loops one "checkpoint" event per checkpoint.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

ENV = "RQAKIT_PROGRESS"
EVERY_S = 1.0          # a bar writes its count at most this often
PRINT_EVERY_S = 10.0   # the reproduce process prints a bar's line at most this often (RQAKIT_PROGRESS_EVERY)
MIN_LOOP_S = 2.0       # loops that end sooner get no line


def emit(kind: str, **fields) -> None:
    """Append one event to the progress file, if there is one; never fails the run."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps({"kind": kind, "t": round(time.time(), 3), **fields}, default=str) + "\n")
    except OSError:
        pass


class Bar(tqdm):
    """tqdm that also reports `n / total` to the progress file (see the module docstring). tqdm
    calls `update` at most every `mininterval` seconds while it iterates, with `n` brought up to
    date, and `close` with the final count."""

    def __init__(self, *args, **kwargs):
        self._t0, self._sent = time.time(), 0.0
        if os.environ.get(ENV):
            kwargs["mininterval"] = min(kwargs.get("mininterval", EVERY_S), EVERY_S)
        super().__init__(*args, **kwargs)
        self._start_n, self._id = self.n, f"{os.getpid()}-{id(self)}"

    def update(self, n=1):
        out = super().update(n)
        self._report()
        return out

    def close(self):
        if not getattr(self, "disable", True):   # tqdm's close disables the bar: a second close is a no-op
            self._report(force=True)
        super().close()

    def _report(self, force: bool = False) -> None:
        if self.disable or not os.environ.get(ENV):
            return
        now = time.time()
        if force or now - self._sent >= EVERY_S or self.n == self.total:
            self._sent = now
            emit("bar", id=self._id, desc=getattr(self, "desc", ""), n=self.n, total=self.total,
                 start=self._start_n, elapsed=round(now - self._t0, 3))


# ----------------------------------------------------------------------------- the reading side
def clock(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def bar_line(event: dict) -> str:
    """`40/210 [19%] 0:04 elapsed, ~0:17 left` (the time left from the rate so far)."""
    n, total, elapsed = event.get("n", 0), event.get("total"), float(event.get("elapsed") or 0.0)
    done = n - (event.get("start") or 0)
    if not total:
        return f"{n} {clock(elapsed)} elapsed"
    left = (total - n) * elapsed / done if done > 0 else None
    tail = f", ~{clock(left)} left" if left is not None else ""
    return f"{n}/{total} [{100 * n // total}%] {clock(elapsed)} elapsed{tail}"


class Echo:
    """Reads the progress file of the running chapter and prints its events through `log`.

    A background thread reads every half second; `drain()` reads the rest synchronously. `where()`
    says which stage and step the run had reached (for the Ctrl-C message).
    """

    def __init__(self, path: Path, log: Callable[[str], None], every_s: float | None = None):
        self.path, self.log = Path(path), log
        self.every_s = float(os.environ.get("RQAKIT_PROGRESS_EVERY", PRINT_EVERY_S)) if every_s is None else every_s
        self.min_s = min(MIN_LOOP_S, self.every_s)
        self.chapter, self.stage, self.last_bar = "", None, None
        self._offset, self._printed, self._lock = 0, {}, threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rqakit-progress", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.drain()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.drain()

    def drain(self) -> None:
        with self._lock:
            try:
                with open(self.path) as handle:
                    handle.seek(self._offset)
                    text = handle.read()
            except OSError:
                return
            complete = text[: text.rfind("\n") + 1]       # a line still being written waits
            self._offset += len(complete.encode())
            for line in complete.splitlines():
                try:
                    self._show(json.loads(line))
                except (ValueError, TypeError):
                    continue

    def _show(self, event: dict) -> None:
        prefix = f"[reproduce] {self.chapter}"
        if event.get("kind") == "stage":
            if event.get("state") == "running":
                self.stage, self.last_bar = event.get("name"), None
                self.log(f"{prefix} · stage {self.stage}: running")
            elif event.get("state") == "done":
                self.log(f"{prefix} · stage {event.get('name')}: done in {clock(event.get('wall_time_s') or 0)}")
            return
        if event.get("kind") != "bar":
            return
        self.last_bar = event
        desc, key = event.get("desc") or "loop", event.get("id") or event.get("desc")
        now = time.monotonic()
        finished = event.get("total") and event.get("n") == event.get("total")
        if key not in self._printed and float(event.get("elapsed") or 0) < self.min_s:
            return   # a loop shorter than min_s is not worth a line
        if not finished and now - self._printed.get(key, -1e9) < self.every_s:
            return
        self._printed[key] = now
        stage = f" · {self.stage}" if self.stage and self.stage != desc else ""
        self.log(f"{prefix}{stage} · {desc}: {bar_line(event)}")

    def where(self) -> str:
        """`at stage joint-dynamic-m4-s1 (joint-dynamic-m4-s1 40/91)`, or '' before any stage."""
        if not self.stage:
            return ""
        bar = self.last_bar
        step = f" ({bar.get('desc')} {bar.get('n')}/{bar.get('total')})" if bar and bar.get("total") else ""
        return f" at stage {self.stage}{step}"

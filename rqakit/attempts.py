"""Time spent on a piece of work over every attempt at it: a run killed and resumed is two attempts.

A stage (`artifacts.run_stage`) or a chapter (`pipeline.reproduce`) that a kill interrupts leaves no
manifest behind, so its time would be lost. `Attempts` keeps a JSON list beside the work, one entry
per attempt, and rewrites the running attempt's entry every `every_s` seconds from a daemon thread:
a kill loses at most that much. When the work completes, `totals` sums every attempt.

    clock = Attempts(work / "attempts.json", commit=KIT_COMMIT)
    with clock.running():
        build()
    clock.totals(elapsed)   # {"wall_time_s", "attempts", "cpu_s", "git_commits"}
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from .atomic import write_json

HEARTBEAT_S = 30.0


class Attempts:
    """The attempts at one piece of work recorded in `path` (earlier ones are read at creation)."""

    def __init__(self, path: str | Path, every_s: float = HEARTBEAT_S, commit: str | None = None):
        self.path = Path(path)
        self.every_s = every_s
        self.commit = commit   # the kit's commit this attempt runs (a resume may run other code)
        self.earlier: list[dict] = []
        if self.path.is_file():
            with contextlib.suppress(ValueError, TypeError):   # a file cut short by a full disk: its attempts are lost
                self.earlier = list(json.loads(self.path.read_text(encoding="utf-8")))
        self.started = time.time()
        self.cpu_started = time.process_time()

    def _current(self) -> dict:
        entry = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
                 "elapsed_s": round(time.time() - self.started, 3),
                 "cpu_s": round(time.process_time() - self.cpu_started, 3)}   # every thread of the process
        if self.commit:
            entry["git_commit"] = self.commit
        return entry

    def record(self) -> None:
        """Write the earlier attempts and this one as it stands now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, [*self.earlier, self._current()])

    @contextlib.contextmanager
    def running(self, enabled: bool = True):
        """Record this attempt every `every_s` seconds while the block runs, and once more if it
        raises (an interrupt, a failure): what it spent counts when the work is resumed."""
        if not enabled:
            yield self
            return
        self.started, self.cpu_started = time.time(), time.process_time()
        stop = threading.Event()

        def beat():
            while not stop.wait(self.every_s):
                with contextlib.suppress(Exception):  # a heartbeat never takes the work down
                    self.record()

        thread = threading.Thread(target=beat, name="rqakit-attempts", daemon=True)
        thread.start()
        try:
            yield self
        except BaseException:
            stop.set()
            thread.join()
            with contextlib.suppress(Exception):
                self.record()
            raise
        stop.set()
        thread.join()

    def totals(self, elapsed_s: float | None = None) -> dict:
        """Wall time and CPU seconds summed over the earlier attempts and this one (`elapsed_s`:
        this attempt's own figure; default: as it stands now), and the distinct kit commits they
        ran, in order."""
        current = self._current()
        if elapsed_s is not None:
            current["elapsed_s"] = elapsed_s
        attempts = [*self.earlier, current]
        return {"wall_time_s": round(sum(float(a.get("elapsed_s", 0.0)) for a in attempts), 3),
                "attempts": len(attempts),
                "cpu_s": round(sum(float(a.get("cpu_s", 0.0)) for a in attempts), 3),
                "git_commits": list(dict.fromkeys(a["git_commit"] for a in attempts if a.get("git_commit")))}

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

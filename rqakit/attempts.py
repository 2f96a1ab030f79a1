"""Time spent on a piece of work over every attempt at it: a run killed and resumed is two attempts.

A stage (`artifacts.run_stage`) or a chapter (`pipeline.reproduce`) that a kill interrupts leaves no
manifest behind, so its time would be lost. `Attempts` keeps a JSON list beside the work, one entry
per attempt, and rewrites the running attempt's entry every `every_s` seconds from a daemon thread:
a kill loses at most that much. When the work completes, `totals` sums every attempt. Each entry
also keeps the mean 1-minute load average of its heartbeats and the CPU seconds the process used:
a stage timed while other jobs shared the CPU (or while it was stopped) reads slow, and the
manifest says by how much.

    clock = Attempts(work / "attempts.json")
    with clock.running(live_split, live_cpu_split):   # {part: seconds} of this attempt so far: wall, CPU
        build()
    clock.totals(final_split, elapsed, threads, final_cpu_split)
    # {"wall_time_s", "attempts", "time_split_s", "time_split_cpu_s", "load_mean", "cpu_s", "cpu_share",
    #  "git_commits"}
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .atomic import write_json

HEARTBEAT_S = 30.0


def attempt_share(attempt: dict, threads: int) -> float:
    """The share of `threads` cores one attempt had: its CPU seconds over threads x its wall time
    where recorded, else threads / its mean load average (its own threads included) above
    `threads`, else 1."""
    elapsed, cpu, load = float(attempt.get("elapsed_s") or 0.0), attempt.get("cpu_s"), attempt.get("load_mean")
    if cpu and elapsed > 0:
        return min(1.0, float(cpu) / (threads * elapsed))
    if load and load > threads:
        return threads / float(load)
    return 1.0


def _sum_splits(splits) -> dict[str, float]:
    out: dict[str, float] = {}
    for split in splits:
        for part, seconds in (split or {}).items():
            out[part] = round(out.get(part, 0.0) + float(seconds), 3)
    return dict(sorted(out.items()))


def _cpu_split(attempt: dict) -> dict[str, float] | None:
    """An attempt's CPU seconds per part: as recorded, else (older code recorded only the total)
    its CPU seconds shared among its parts by their wall seconds; None without CPU seconds."""
    if "cpu_split_s" in attempt:
        return attempt["cpu_split_s"]
    if attempt.get("cpu_s") is None:
        return None
    split = {part: float(seconds) for part, seconds in (attempt.get("split_s") or {}).items()}
    wall = sum(split.values())
    if wall <= 0:
        return {"other": float(attempt["cpu_s"])}
    return {part: float(attempt["cpu_s"]) * seconds / wall for part, seconds in split.items()}


def _time_weighted_share(attempts: list[dict], threads: int) -> float | None:
    wall = sum(float(a.get("elapsed_s") or 0.0) for a in attempts)
    if wall <= 0:
        return None
    return round(sum(float(a.get("elapsed_s") or 0.0) * attempt_share(a, threads) for a in attempts) / wall, 3)


class Attempts:
    """The attempts at one piece of work recorded in `path` (earlier ones are read at creation)."""

    def __init__(self, path: str | Path, every_s: float = HEARTBEAT_S, commit: str | None = None):
        self.path = Path(path)
        self.every_s = every_s
        self.commit = commit   # the kit's commit this attempt runs (resumes may run other code)
        self.earlier: list[dict] = []
        if self.path.is_file():
            try:
                self.earlier = list(json.loads(self.path.read_text(encoding="utf-8")))
            except (ValueError, TypeError):  # a file cut short by a full disk: its attempts are lost
                self.earlier = []
        self.started = time.time()
        self.cpu_started = time.process_time()
        self.loads: list[float] = []
        self.live_cpu: Callable[[], dict] | None = None

    def _sample_load(self) -> None:
        with contextlib.suppress(OSError, AttributeError):   # no load average on this platform
            self.loads.append(os.getloadavg()[0])

    def _current(self, live: Callable[[], dict] | None) -> dict:
        elapsed = time.time() - self.started
        split = dict(live() if live else {})
        split["other"] = max(0.0, elapsed - sum(split.values()))
        entry = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
                 "elapsed_s": round(elapsed, 3), "split_s": {k: round(v, 3) for k, v in split.items()},
                 "cpu_s": round(time.process_time() - self.cpu_started, 3)}   # every thread of the process
        if self.live_cpu is not None:
            cpu_split = dict(self.live_cpu())
            cpu_split["other"] = max(0.0, entry["cpu_s"] - sum(cpu_split.values()))
            entry["cpu_split_s"] = {k: round(v, 3) for k, v in cpu_split.items()}
        if self.loads:
            entry["load_mean"] = round(sum(self.loads) / len(self.loads), 2)
        if self.commit:
            entry["git_commit"] = self.commit
        return entry

    def record(self, live: Callable[[], dict] | None = None) -> None:
        """Write the earlier attempts and this one as it stands now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, [*self.earlier, self._current(live)])

    @contextlib.contextmanager
    def running(self, live: Callable[[], dict] | None = None, live_cpu: Callable[[], dict] | None = None,
                enabled: bool = True):
        """Record this attempt every `every_s` seconds while the block runs, and once more if it
        raises (an interrupt, a failure): what it spent counts when the work is resumed. `live`,
        `live_cpu`: the attempt's wall and CPU seconds per part so far (rqakit.timing)."""
        if not enabled:
            yield self
            return
        self.live_cpu = live_cpu
        self.started = time.time()
        self.cpu_started = time.process_time()
        self.loads = []
        self._sample_load()
        stop = threading.Event()

        def beat():
            while not stop.wait(self.every_s):
                with contextlib.suppress(Exception):  # a heartbeat never takes the work down
                    self._sample_load()
                    self.record(live)

        thread = threading.Thread(target=beat, name="rqakit-attempts", daemon=True)
        thread.start()
        try:
            yield self
        except BaseException:
            stop.set()
            thread.join()
            with contextlib.suppress(Exception):
                self.record(live)
            raise
        stop.set()
        thread.join()

    def totals(self, split: dict | None = None, elapsed_s: float | None = None, threads: int | None = None,
               cpu_split: dict | None = None) -> dict:
        """Wall time and time split summed over the earlier attempts and this one (`split`,
        `elapsed_s`: this attempt's final figures; default: as it stands now), the CPU seconds per
        part likewise (`cpu_split`; `_cpu_split` for earlier attempts; None unless every attempt
        recorded its CPU seconds), the mean load
        average over them, weighted by time (None where none was sampled), the CPU seconds of the
        process over them (None unless every attempt recorded its own), the share of `threads`
        cores they had (`attempt_share` weighted by time; None without `threads`), and the
        distinct kit commits they ran, in order."""
        elapsed = time.time() - self.started if elapsed_s is None else elapsed_s
        current = {**self._current(None), "elapsed_s": elapsed}
        attempts = [*self.earlier, current]
        loaded = [(float(a["elapsed_s"]), float(a["load_mean"])) for a in attempts if "load_mean" in a]
        earlier_cpu = [_cpu_split(a) for a in self.earlier]
        weight = sum(t for t, _ in loaded)
        return {"wall_time_s": round(sum(float(a.get("elapsed_s", 0.0)) for a in attempts), 3),
                "attempts": len(attempts),
                "time_split_s": _sum_splits([*(a.get("split_s") for a in self.earlier), split]),
                "time_split_cpu_s": (_sum_splits([*earlier_cpu, cpu_split])
                                     if cpu_split is not None and None not in earlier_cpu else None),
                "load_mean": round(sum(t * load for t, load in loaded) / weight, 2) if weight > 0 else None,
                "cpu_s": (round(sum(float(a["cpu_s"]) for a in attempts), 3)
                          if all("cpu_s" in a for a in attempts) else None),
                "cpu_share": _time_weighted_share(attempts, threads) if threads else None,
                "git_commits": list(dict.fromkeys(a["git_commit"] for a in attempts if a.get("git_commit")))}

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

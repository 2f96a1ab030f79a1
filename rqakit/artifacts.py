"""Atomic, cached stage folders, one per config: `<workdir>/<profile>/<stage>/<config hash>/`.

A stage writes into `.<hash>.tmp-<pid>` and renames it to `<hash>` only once complete, with a
`manifest.json` (config hash, kit version, git commit, machine, precision, wall time summed over
every attempt, a killed and resumed run included, and the stage's own figures).
A folder whose manifest is missing or whose hash differs is never taken as done, so a killed run
restarts that stage and nothing after it looks complete. Another config writes another folder:
no complete result is ever deleted except by `rqakit runs --clean` (or rebuilt by `--force`).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import __version__
from .atomic import atomic_path, remove_stale, temporary_sibling, write_json
from .attempts import Attempts
from .progress import emit
from .runtime import barrier, compute_dtype_name, cpu_supports_bf16, world
from .stage_folder import StageFolder

ATTEMPTS = "attempts.json"   # in the work folder: every attempt's time (rqakit.attempts)


CODE_PATHS = (":/rqakit", ":/notebooks")   # what a run executes: "-dirty" when these differ from the commit


def git_commit(cwd: Path | None = None) -> str:
    """The short commit of the kit's code, "-dirty" when the package or the notebooks differ from it
    (a report being written into reports/ is no change of code); "unknown" outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=cwd or Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


KIT_COMMIT = git_commit()   # the code this process imported: a later checkout does not change it


def threads() -> int:
    import torch

    return torch.get_num_threads()


def cpu_share(cpu_s: float | None, wall_s: float | None, n_threads: int | None) -> float | None:
    """The share of its cores a run had: CPU seconds over threads x wall seconds, at most 1. Below 1,
    other jobs shared the CPU (or the run was paused) and its times read slow."""
    if not cpu_s or not wall_s or not n_threads:
        return None
    return round(min(1.0, cpu_s / (n_threads * wall_s)), 3)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """'Linux x86_64, <CPU model>, 2 cores, native bf16, no GPU, torch 2.13.0+cpu'."""
    import torch

    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, {bf16}, {gpu}, "
            f"torch {torch.__version__}")


def machine_cpu(line: str | None) -> str:
    """The CPU model a `machine()` line names ("Linux x86_64, AMD EPYC, 2 cores, ..." -> "AMD EPYC")."""
    parts = str(line).split(", ")
    return parts[1] if len(parts) > 1 else str(line)


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest; None while it has none (the stage has not finished there)."""
    return StageFolder(folder).manifest


def is_complete(folder: Path, cfg_hash: str) -> bool:
    manifest = read_manifest(folder)
    return bool(manifest) and manifest.get("config_hash") == cfg_hash


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (or in the nearest existing folder above it, where
    it would be made), or None when they can."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:  # a real write: permission bits say nothing for root, and nothing about read-only mounts
        handle, name = tempfile.mkstemp(prefix=".rqakit-probe-", dir=probe)
    except OSError as exc:
        return f"{probe} is not writable ({exc.strerror})"
    os.close(handle)
    os.unlink(name)
    return None


_SAID_CACHED: set[str] = set()   # "[stage] cached" is logged once per folder and process


def shown(folder: Path) -> str:
    """The folder relative to the working directory when below it (reports stay portable)."""
    folder = Path(folder).absolute()
    try:
        return str(folder.relative_to(Path.cwd()))
    except ValueError:
        return str(folder)


def missing_stages(stages: dict[str, str]) -> list[str]:
    """Those of `{folder: config hash}` that are not complete for their hash (deleted, partial, rebuilt)."""
    return [folder for folder, cfg_hash in stages.items() if not is_complete(Path(folder), cfg_hash)]


def run_stage(folder: Path, cfg_hash: str, build: Callable[[Path], dict | None], *,
              config: dict | None = None, force: bool = False, every_rank: bool = True, log=print) -> Path:
    """Build `folder` (`<stage>/<hash>`) with `build(tmp_folder) -> extra manifest fields`, unless
    it is complete.

    `build` may keep resumable state (checkpoints) in `work_dir(folder)` (`<stage>/<hash>.work`),
    which survives a kill, belongs to this config alone, is cleared by `force`, and is removed once
    the folder is complete. Results of other configs beside it are never touched. On completion
    `<stage>/latest` links to the newest result.

    Under torchrun, rank 0 alone publishes the folder. Every process runs `build` (a stage that
    trains under DDP) unless `every_rank` is False (rank 0 alone builds: no process holds a second
    copy of the work). The other processes then wait for the published folder on the filesystem,
    not at a collective, which would time out while rank 0 evaluates alone.
    """
    folder = Path(folder)
    rank, world_size = world()
    if not force and is_complete(folder, cfg_hash):
        if str(folder.absolute()) not in _SAID_CACHED:
            log(f"[{stage_label(folder)}] cached ({cfg_hash})")
            _SAID_CACHED.add(str(folder.absolute()))
        link_latest(folder)
        return folder
    work = work_dir(folder)
    remove_stale_temporaries(folder)
    if force and rank == 0:
        shutil.rmtree(work, ignore_errors=True)
    barrier()
    others = [p.name for p in completed(folder.parent) if p.name != folder.name]
    if others:
        log(f"[{stage_label(folder)}] config {cfg_hash}; results of {len(others)} other configs are kept "
            f"beside it (`rqakit runs --clean` removes them)")
    start = time.time()
    emit("stage", name=stage_label(folder), folder=str(folder.absolute()), state="running")
    try:
        if rank == 0 or every_rank:
            _build_into(folder, cfg_hash, build, config, start, rank)
    except _NotPublished:
        pass
    if rank != 0:
        wait_until(lambda: is_complete(folder, cfg_hash))
        return folder
    shutil.rmtree(work, ignore_errors=True)
    link_latest(folder)
    wall = time.time() - start
    log(f"[{stage_label(folder)}] done in {wall:.1f} s")
    emit("stage", name=stage_label(folder), folder=str(folder.absolute()), state="done", wall_time_s=round(wall, 3))
    return folder


POLL_S = 5.0   # how often a process waiting for rank 0's folder looks


def wait_until(ready: Callable[[], bool]) -> None:
    """Until rank 0 has written what `ready` looks for (torchrun ends every process if rank 0 fails)."""
    while not ready():
        time.sleep(POLL_S)


def _build_into(folder: Path, cfg_hash: str, build, config: dict | None, start: float, rank: int) -> None:
    clock = Attempts(work_dir(folder) / ATTEMPTS, commit=KIT_COMMIT)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        with clock.running(enabled=rank == 0):
            extra = build(tmp) or {}
        spent = clock.totals(time.time() - start)
        runtime_cfg = (config or {}).get("runtime", {})
        manifest = {
            "stage": stage_label(folder),
            "config_hash": cfg_hash,
            "kit_version": __version__,
            "git_commit": KIT_COMMIT,                        # the code of the attempt that finished
            "git_commits": spent["git_commits"],             # of every recorded attempt, in order
            "machine": machine(),
            "compute_dtype": compute_dtype_name(runtime_cfg.get("device", "auto"), runtime_cfg.get("precision")),
            "wall_time_s": spent["wall_time_s"],           # every attempt: a resumed run counts its kills
            "attempts": spent["attempts"],
            "cpu_s": spent["cpu_s"],                         # CPU seconds of the process, every thread
            "threads": threads(),
            "cpu_share": cpu_share(spent["cpu_s"], spent["wall_time_s"], threads()),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        if config is not None:
            write_json(tmp / "config.json", config)
        write_json(tmp / "manifest.json", manifest)
        if rank != 0:  # under torchrun every rank trains; rank 0 alone publishes the folder
            raise _NotPublished


class _NotPublished(Exception):
    """Raised inside `atomic_path` on ranks other than 0 so that their copy is dropped."""


def stage_label(folder: Path) -> str:
    """"warmup_de" for `runs/toy/warmup_de/<hash>`."""
    return Path(folder).parent.name


def completed(stage_dir: Path) -> list[Path]:
    """The complete result folders of one stage (any config), oldest first."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return []
    found = [p for p in stage_dir.iterdir() if p.is_dir() and not p.is_symlink() and read_manifest(p)]
    return sorted(found, key=lambda p: read_manifest(p).get("finished_at", ""))


def link_latest(folder: Path) -> None:
    """Point `<stage>/latest` at `folder` (relative link; skipped where links are not allowed)."""
    link = Path(folder).parent / "latest"
    try:
        tmp = temporary_sibling(link)
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(folder).name)
        os.replace(tmp, link)
    except OSError:
        pass


def remove_stale_temporaries(folder: Path) -> None:
    """Drop the `.<name>.tmp-<pid>` folders of `folder` left by killed processes."""
    remove_stale(Path(folder).parent, f".{Path(folder).name}.tmp-*")


def work_dir(folder: Path) -> Path:
    """Resumable scratch space of a stage (checkpoints); kept across kills, dropped when done."""
    return Path(folder).with_name(Path(folder).name + ".work")

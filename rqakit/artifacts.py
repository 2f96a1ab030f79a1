"""Atomic, cached stage folders.

A stage writes into `<name>.tmp-<pid>` and renames it to `<name>` only once complete, with a
`manifest.json` (config hash, kit version, git commit, wall time, and the stage's own figures).
A folder whose manifest is missing or whose hash differs is never taken as done, so a killed run
restarts that stage and nothing after it looks complete.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import __version__


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd or Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


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


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


# Stage folders handed out since the last chapter record (folder -> config hash): a chapter's
# record lists them, and the chapter counts as done only while they are all complete.
_STAGES_READ: dict[str, str] = {}
_SAID_CACHED: set[str] = set()   # "[stage] cached" is logged once per folder and process


def _shown(folder: Path) -> str:
    """The folder relative to the working directory when below it (reports stay portable)."""
    folder = Path(folder).absolute()
    try:
        return str(folder.relative_to(Path.cwd()))
    except ValueError:
        return str(folder)


def note_stage_read(folder: Path, cfg_hash: str) -> None:
    _STAGES_READ[_shown(folder)] = cfg_hash


def take_stages_read() -> dict[str, str]:
    """The stage folders read since the last call (and forget them)."""
    read = dict(_STAGES_READ)
    _STAGES_READ.clear()
    return read


def missing_stages(stages: dict[str, str]) -> list[str]:
    """Those of `{folder: config hash}` that are not complete for their hash (deleted, partial, rebuilt)."""
    return [folder for folder, cfg_hash in stages.items() if not is_complete(Path(folder), cfg_hash)]


def run_stage(folder: Path, cfg_hash: str, build: Callable[[Path], dict | None], *,
              config: dict | None = None, force: bool = False, log=print) -> Path:
    """Build `folder` with `build(tmp_folder) -> extra manifest fields`, unless it is complete.

    `build` may keep resumable state (checkpoints) in `<folder>.work/`, which survives a kill and is
    removed once the folder is complete.
    """
    from .training import world

    folder = Path(folder)
    rank, world_size = world()
    if not force and is_complete(folder, cfg_hash):
        if str(folder.absolute()) not in _SAID_CACHED:
            log(f"[{folder.name}] cached ({cfg_hash})")
            _SAID_CACHED.add(str(folder.absolute()))
        note_stage_read(folder, cfg_hash)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.time()
    from .progress import emit

    emit("stage", name=folder.name, folder=str(folder.absolute()), state="running")
    try:
        extra = build(tmp) or {}
        manifest = {
            "stage": folder.name,
            "config_hash": cfg_hash,
            "kit_version": __version__,
            "git_commit": git_commit(),
            "machine": machine(),
            "wall_time_s": round(time.time() - start, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        if config is not None:
            write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / "manifest.json", manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank == 0:
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        shutil.rmtree(work_dir(folder), ignore_errors=True)
        log(f"[{folder.name}] done in {manifest['wall_time_s']:.1f} s")
        emit("stage", name=folder.name, folder=str(folder.absolute()), state="done", wall_time_s=manifest["wall_time_s"])
    else:  # under torchrun every rank trains; rank 0 alone publishes the folder
        shutil.rmtree(tmp, ignore_errors=True)
    note_stage_read(folder, cfg_hash)
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return folder


def remove_stale_temporaries(folder: Path) -> None:
    """Drop `<name>.tmp-<pid>` folders left by killed processes (a live pid's folder is kept)."""
    for tmp in Path(folder).parent.glob(f"{Path(folder).name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def work_dir(folder: Path) -> Path:
    """Resumable scratch space of a stage (checkpoints); kept across kills, dropped when done."""
    return Path(folder).with_name(Path(folder).name + ".work")

"""A chapter's record: `<out_dir>/<chapter>.json`, written by the last cell of its notebook.

    write_chapter("reports/toy", "02_baselines", ws, {"bm25": {...}})
    is_current("reports/toy", "02_baselines", report_hash(cfg))   # True: `rqakit reproduce` skips it

The record carries the config hash of the resolved config, the kit version and the stage folders
the chapter read (`stages`: folder -> the stage's config hash); a chapter is done for that config
while its record matches and every one of those folders is still complete.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..artifacts import KIT_COMMIT, missing_stages
from ..atomic import write_json as write_json_atomic
from ..config import report_hash


def jsonable(obj):
    """Plain JSON values: numpy scalars and arrays unwrapped, non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def chapter_path(out_dir: str | Path, chapter: str) -> Path:
    return Path(out_dir) / f"{chapter}.json"


def write_chapter(out_dir: str | Path, chapter: str, ws, results: dict) -> Path:
    """Write the chapter's results with the stamp that `is_current` checks: the config of `ws`
    (the Workspace the notebook holds) and the stage folders its stages handed out."""
    cfg = ws.config
    path = chapter_path(out_dir, chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "chapter": chapter,
        "profile": cfg.profile,
        "config_hash": report_hash(cfg),
        "kit_version": __version__,
        "git_commit": KIT_COMMIT,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": dict(ws.stages_read),
        "results": jsonable(results),
    }
    write_json_atomic(path, record)
    return path


def read_chapter(out_dir: str | Path, chapter: str) -> dict | None:
    import json

    path = chapter_path(out_dir, chapter)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def stale_reason(out_dir: str | Path, chapter: str, cfg_hash: str) -> str | None:
    """Why the chapter must run again for this config, or None when its record is current and the
    stage folders it read are all still complete."""
    record = read_chapter(out_dir, chapter)
    if not record:
        return "no record"
    if record.get("config_hash") != cfg_hash:
        return f"recorded for config {record.get('config_hash')}"
    if record.get("kit_version") != __version__:
        return f"recorded by kit {record.get('kit_version')}"
    if not isinstance(record.get("stages"), dict):
        return "its record does not list the stage folders it read"
    missing = missing_stages(record["stages"])
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"stage folder {missing[0]} is missing or incomplete{more}"
    return None


def is_current(out_dir: str | Path, chapter: str, cfg_hash: str) -> bool:
    """True when the chapter's record exists for this config hash and this kit version, and the
    stage results it read are still on disk."""
    return stale_reason(out_dir, chapter, cfg_hash) is None


# ------------------------------------------------------------------------------ chapter times
CHAPTER_TIMES = "chapters.json"


def read_chapter_times(out_dir: str | Path) -> dict:
    """`<out_dir>/chapters.json`: {"chapters": {name: {wall_time_s, overhead_s, ...}}, ...}; empty when absent."""
    import json

    path = Path(out_dir) / CHAPTER_TIMES
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"chapters": {}}
    data.setdefault("chapters", {})
    return data


def write_chapter_times(out_dir: str | Path, data: dict) -> Path:
    path = Path(out_dir) / CHAPTER_TIMES
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, jsonable(data))
    return path


def committed_report(profile_name: str) -> Path:
    """`reports/<profile>` of the repository: the committed report, whose results are the expected values."""
    return Path(__file__).resolve().parents[2] / "reports" / profile_name


def default_out(cfg) -> Path:
    """Where a reproduction writes: a scratch folder beside the stage cache when the profile has a
    committed report (checked against it, never overwritten), else `reports/<profile>`."""
    committed = committed_report(cfg.profile)
    if (committed / "results.json").exists():
        return Path(cfg.runtime.workdir) / cfg.profile / "report"
    return committed


def open_chapter(profile: str, overrides: dict | None = None, out_dir: str | Path | None = None):
    """A chapter's first call, the same in JupyterLab and under papermill: paths from the
    repository root, library logs and loading bars quiet, the config, its Workspace, and the report
    folder (`out_dir`, else where `rqakit reproduce` writes). Returns (cfg, ws, out_dir)."""
    from ..config import load_config
    from ..stages import Workspace

    work_from_repository_root()
    quiet_libraries()
    cfg = load_config(profile, overrides)
    ws = Workspace(cfg)
    if cfg.runtime.kernels != ws.kernels:
        print(f"note: profile {cfg.profile} computes with {cfg.runtime.kernels} kernels (rqakit reproduce sets them); "
              f"this kernel has {ws.kernels} ones, so its stages are cached in folders of their own")
    return cfg, ws, Path(out_dir) if out_dir else default_out(cfg)


def quiet_libraries() -> None:
    """ir_datasets' INFO lines and the loading bars of transformers and huggingface_hub off;
    warnings stay."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("ir_datasets").setLevel(logging.WARNING)
    try:
        import transformers

        transformers.logging.set_verbosity_warning()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def work_from_repository_root() -> Path:
    """Change to the repository root when the kernel runs in its `notebooks/` folder.

    JupyterLab starts a notebook's kernel in the notebook's folder; `rqakit reproduce` runs it in
    the caller's. Relative paths (`runtime.workdir`'s stage cache, `out_dir`) then mean the same
    folders in both, so a notebook opened by hand reuses the stages the command line trained.
    """
    import os

    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "rqakit" / "__init__.py").exists():
        os.chdir(here.parent)
    return Path.cwd()

"""The pipeline's stages; each `run(workspace) -> artifact folder`, cached by config hash.

    baselines -> warmup_de -> warmup_ce -> augment -> joint (dynamic | static | pointwise | no-denoise)
"""
from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..errors import RqaError
from .workspace import Workspace

STAGES = ("baselines", "warmup_de", "warmup_ce", "augment", "joint", "st_mnrl")


def run_named_stage(name: str, cfg: RunConfig, *, force: bool = False, **options) -> Path:
    """`rqakit stage NAME`: one stage (and, cached, the stages it needs)."""
    from importlib import import_module

    from ..runtime import init_distributed

    init_distributed()  # a no-op unless launched by torchrun

    base, _, variant = name.partition(":")
    if base not in STAGES:
        raise RqaError(f"unknown stage {name!r}; choose one of: {', '.join(STAGES)} (joint:VARIANT for a variant)")
    module = import_module(f"{__name__}.{base}")
    ws = Workspace(cfg)
    if base == "joint" and variant:
        return module.run(ws, variant, force=force, **options)
    return module.run(ws, force=force, **options)


def stage_results(cfg: RunConfig, *, clean: bool = False) -> dict:
    """`rqakit runs`: every result folder under `<workdir>/<profile>/`, whether the config gives
    it now ("current"), and with `clean` the removal of the others, of unfinished work folders and
    of temporaries left by killed processes. Current results and their work folders are kept."""
    import shutil

    from ..artifacts import read_manifest
    from ..atomic import remove_stale

    # this process's folders, and for a profile with portable kernels also those rqakit reproduce makes
    kinds = dict.fromkeys([None, cfg.runtime.kernels])
    spaces = [Workspace(cfg, kernels=k) for k in kinds]
    ws = spaces[0]
    rows, removed = [], []
    for stage_dir in sorted(p for p in ws.root.glob("*") if p.is_dir()) if ws.root.is_dir() else []:
        try:
            current = {w.folder(stage_dir.name).name for w in spaces}
        except RqaError:
            current = set()  # not a stage this kit version knows
        for entry in sorted(stage_dir.iterdir()):
            if entry.name == "latest" or entry.name.startswith("."):
                continue
            cfg_hash, manifest = entry.name.removesuffix(".work"), read_manifest(entry)
            kind = "work" if entry.name.endswith(".work") else "result" if manifest else "incomplete"
            row = {"stage": stage_dir.name, "hash": cfg_hash, "kind": kind, "current": cfg_hash in current,
                   "finished_at": (manifest or {}).get("finished_at")}
            if clean and not row["current"]:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(str(entry))
            rows.append(row)
        if clean:
            remove_stale(stage_dir)  # temporaries of killed processes
    return {"root": str(ws.root), "folders": rows, "removed": removed}


__all__ = ["Workspace", "run_named_stage", "stage_results", "STAGES"]

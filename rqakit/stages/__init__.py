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

    from ..training import init_distributed

    init_distributed()  # a no-op unless launched by torchrun

    base, _, variant = name.partition(":")
    if base not in STAGES:
        raise RqaError(f"unknown stage {name!r}; choose one of: {', '.join(STAGES)} (joint:VARIANT for a variant)")
    module = import_module(f"{__name__}.{base}")
    ws = Workspace(cfg)
    if base == "joint" and variant:
        return module.run(ws, variant, force=force, **options)
    return module.run(ws, force=force, **options)


__all__ = ["Workspace", "run_named_stage", "STAGES"]

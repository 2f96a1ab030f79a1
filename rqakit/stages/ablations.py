"""The runs behind Table 4 and Figure 4: joint training under each switch, over seeds.

dynamic and static run with every seed of `ablations.seeds` (mean ± sd and a paired test);
pointwise and no-denoise with `ablations.variant_seeds`; the list-size study trains `dynamic`
with each m of `ablations.list_sizes` (lists truncated from the augment stage's m).
"""
from __future__ import annotations

from pathlib import Path

from . import joint
from .workspace import Workspace


def planned_runs(ws: Workspace) -> list[dict]:
    a, m = ws.cfg.ablations, ws.cfg.joint.list_size
    runs = [{"variant": v, "list_size": m, "seed": s} for v in ("dynamic", "static") for s in a.seeds]
    runs += [{"variant": v, "list_size": m, "seed": s} for v in ("pointwise", "no-denoise") for s in a.variant_seeds]
    runs += [{"variant": "dynamic", "list_size": size, "seed": s} for size in a.list_sizes if size != m
             for s in a.variant_seeds]
    return runs


def run_all(ws: Workspace, *, force: bool = False, rebuilt: list[dict] = (), log=print) -> list[tuple[dict, Path]]:
    """Run (or reuse) every planned joint run -> [(spec, folder)]. With `force`, every run is
    rebuilt except those in `rebuilt` (specs an earlier chapter has just rebuilt)."""
    return [(spec, joint.run(ws, spec["variant"], list_size=spec["list_size"], seed=spec["seed"],
                             force=force and spec not in rebuilt, log=log))
            for spec in planned_runs(ws)]

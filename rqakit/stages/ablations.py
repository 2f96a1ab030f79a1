"""The runs behind Table 4 and Figure 4: joint training under each switch, over seeds.

dynamic and static run with every seed of `ablations.seeds` (mean ± sd and a paired test);
pointwise and no-denoise with `ablations.variant_seeds`; the list-size study trains `dynamic`
with each m of `ablations.list_sizes` (lists truncated from the augment stage's m).

Table 4 runs at its own list size, `ablations.list_size` (the paper: 8 instances per query on
MS MARCO, where the main runs use 128); null keeps it at `joint.list_size`. When the two differ,
dynamic and static run at both: the main m for Table 2 and the paired test, Table 4's m for it.
"""
from __future__ import annotations

from pathlib import Path

from . import joint, rerank
from .workspace import Workspace


def ablation_list_size(cfg) -> int:
    """m of the Table 4 runs: `ablations.list_size`, else `joint.list_size`."""
    return cfg.ablations.list_size or cfg.joint.list_size


def planned_runs(ws: Workspace) -> list[dict]:
    a, m, m4 = ws.cfg.ablations, ws.cfg.joint.list_size, ablation_list_size(ws.cfg)
    sizes = [m] if m4 == m else [m, m4]
    runs = [{"variant": v, "list_size": size, "seed": s} for size in sizes for v in ("dynamic", "static") for s in a.seeds]
    runs += [{"variant": v, "list_size": m4, "seed": s} for v in ("pointwise", "no-denoise") for s in a.variant_seeds]
    runs += [{"variant": "dynamic", "list_size": size, "seed": s} for size in a.list_sizes if size not in sizes
             for s in a.variant_seeds]
    return runs


def run_all(ws: Workspace, *, force: bool = False, rebuilt: list[dict] = (), log=print) -> list[tuple[dict, Path]]:
    """Run (or reuse) every planned joint run -> [(spec, folder)], then the re-rankings of their
    candidates no training stage evaluates (`rerank_plan`). With `force`, every run is rebuilt
    except those in `rebuilt` (specs an earlier chapter has just rebuilt)."""
    done = [(spec, joint.run(ws, spec["variant"], list_size=spec["list_size"], seed=spec["seed"],
                             force=force and spec not in rebuilt, log=log))
            for spec in planned_runs(ws)]
    for system, seed, retriever, reranker in rerank_plan(ws, done):
        rerank.run(ws, retriever=retriever, reranker=reranker, name=f"{system}-s{seed}", force=force, log=log)
    return done


def rerank_plan(ws: Workspace, done: list[tuple[dict, Path]]) -> list[tuple[str, int, Path, Path]]:
    """(system, seed, retriever folder, re-ranker folder) of Table 3's rows that no training stage
    evaluates: the warm re-ranker on each static and dynamic retriever's test candidates, and the
    joint re-ranker of dynamic seed s on static seed s's (the paper re-ranks both retrievers)."""
    m = ws.cfg.joint.list_size
    main = {(spec["variant"], spec["seed"]): folder for spec, folder in done if spec["list_size"] == m}
    warm = ws.folder("warmup_ce")
    plan = [(f"warmup_ce@{variant}", seed, folder, warm) for (variant, seed), folder in main.items()
            if variant in ("static", "dynamic")]
    plan += [("joint_ce@static", seed, folder, main["dynamic", seed]) for (variant, seed), folder in main.items()
             if variant == "static" and ("dynamic", seed) in main]
    return plan

"""What the stages of one profile share: the config, the artifact root, the splits and the corpus.

    ws = Workspace(load_config("toy"))
    ws.train, ws.val, ws.test      # Split: training queries, validation slice held out of them, test
    ws.corpus                       # Corpus, streamed
    ws.hash("warmup_de")            # config hash of that stage and everything upstream
    ws.folder("warmup_de")          # runs/<profile>/warmup_de/<hash>: one folder per config

What a stage's hash covers is declared beside the stage: `READS`, the config fields (or whole
sections) its code reads, and `NEEDS`, the stages whose outputs it reads; their hashes enter its
own, and `upstream` runs them before it. `tests/test_stage_hashes.py` runs every stage under a
config that records each field read and fails when a read field is not covered. Fields no output
depends on (`NEUTRAL`: batch sizes of inference, checkpoint intervals, the runtime section) stay
out; the dtype the stages compute in (`runtime.precision` and the hardware: bfloat16 or float32 on
a CPU) goes in.
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from importlib import import_module
from pathlib import Path

from ..config import NEUTRAL, RunConfig, at_default, config_hash, expand, plain

# What every stage reads through `ws.train`, `ws.val`, `ws.test` and `ws.corpus`.
SPLITS = ("data.train", "data.eval", "data.eval_fraction", "data.val_fraction", "data.split_seed",
          "data.max_train_queries", "data.use_titles")


def stage_module(stage: str):
    """`rqakit.stages.<base>` for "warmup_de", "joint", "joint-dynamic-m8-s1" ..."""
    base = stage.split("-")[0].split(":")[0]
    return import_module(f"{__package__}.{base}")


def covered(cfg: RunConfig, stage: str) -> set[str]:
    """Every field the hash of `stage` depends on: its READS and those of all it NEEDS."""
    module = stage_module(stage)
    fields = expand(cfg, module.READS)
    for upstream in module.NEEDS:
        fields |= covered(cfg, upstream)
    return fields


class Workspace:
    def __init__(self, cfg: RunConfig, root: Path | str | None = None, kernels: str | None = None):
        self.cfg = cfg                     # what stages read (a recording view in the hash test)
        self.config: RunConfig = plain(cfg)  # the config itself, for hashes and manifests
        self.root = Path(root) if root is not None else Path(self.config.runtime.workdir) / self.config.profile
        from ..runtime import compute_dtype_name

        # What the stages compute in (bfloat16 on a bf16 CPU or GPU unless runtime.precision=fp32):
        # part of every stage hash, so a cached stage is reused only in the precision that built it.
        self.compute_dtype = compute_dtype_name(self.config.runtime.device, self.config.runtime.precision)
        # Portable kernels compute other bits than the CPU's native ones: their folders apart too.
        # A process that computes has them or not (`runtime.kernels` sets them in the kernels rqakit
        # reproduce starts); one that only reads another's folders names them (`kernels`).
        from ..env import portable_kernels_active

        self.kernels = kernels or ("portable" if portable_kernels_active() else "native")
        # The stage folders this workspace's stages handed out (folder -> config hash): a chapter's
        # record lists them (`report.chapter.write_chapter`), and it counts as done while they last.
        self.stages_read: dict[str, str] = {}

    def apply(self) -> "Workspace":
        """The one call that sets this config's process-wide settings: torch threads, the CPU
        dropout masks and the precision. Every stage calls it before it computes; creating a
        Workspace (to hash, list or read folders) changes nothing."""
        from ..models import cpu_dropout
        from ..runtime import set_precision

        if self.config.runtime.threads:
            import torch

            torch.set_num_threads(self.config.runtime.threads)
        cpu_dropout.use(self.config.runtime.dropout_masks == "kit")
        set_precision(self.config.runtime.precision)
        return self

    def hash(self, stage: str, extra: dict | None = None, sections: dict | None = None) -> str:
        """Hash of the fields `stage` reads (minus NEUTRAL ones) and of the stages it needs;
        `sections` ({"joint": JointConfig}) stands in for config sections (a joint variant's)."""
        module = stage_module(stage)
        cfg = dataclasses.replace(self.config, **(sections or {}))
        neutral = expand(cfg, NEUTRAL)
        reads = {key: _get(cfg, key) for key in sorted(expand(cfg, module.READS) - neutral)}
        reads = {key: value for key, value in reads.items() if not at_default(key, value)}
        needs = {name: self.hash(name) for name in module.NEEDS}
        body = {"stage": stage.split("-")[0], "reads": reads, "needs": needs, "compute_dtype": self.compute_dtype}
        if self.kernels == "portable":
            body["kernels"] = "portable"
        return config_hash(body, extra=extra)

    def build(self, folder: Path, cfg_hash: str, build, *, force: bool = False, every_rank: bool = True,
              log=print) -> Path:
        """`artifacts.run_stage` with this config in the manifest; the folder is noted in `stages_read`."""
        from ..artifacts import run_stage, shown

        folder = run_stage(folder, cfg_hash, build, config=self.config_dict(), force=force, every_rank=every_rank,
                           log=log)
        self.stages_read[shown(folder)] = cfg_hash
        return folder

    def upstream(self, stage: str, log=print) -> dict[str, Path]:
        """{name: folder} of the stages `stage` NEEDS, in their declared order, each run first unless
        cached: the NEEDS that enter the hash are also what runs."""
        return {name: stage_module(name).run(self, log=log) for name in stage_module(stage).NEEDS}

    def folder(self, stage: str, cfg_hash: str | None = None) -> Path:
        """`<root>/<stage>/<hash>`: the stage's result for this config (or for `cfg_hash`).

        `stage` is a stage name or a run name its module hashes itself ("joint-dynamic-m8-s1").
        """
        if cfg_hash is None:
            module = stage_module(stage)
            cfg_hash = module.stage_hash(self, stage) if hasattr(module, "stage_hash") else self.hash(stage)
        return self.root / stage / cfg_hash

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    # -- data -----------------------------------------------------------------------------------
    @cached_property
    def _splits(self):
        from ..data import holdout, train_eval_splits

        d = self.cfg.data
        train, test = train_eval_splits(d.train, d.eval, eval_fraction=d.eval_fraction, seed=d.split_seed)
        train, val = holdout(train, d.val_fraction, d.split_seed)
        if d.max_train_queries:
            train = train.subset(sorted(train.queries)[: d.max_train_queries])
        return train, val, test

    @property
    def train(self):
        return self._splits[0]

    @property
    def val(self):
        return self._splits[1]

    @property
    def test(self):
        return self._splits[2]

    @cached_property
    def corpus(self):
        from ..data import load_corpus

        return load_corpus(self.cfg.data.train, use_titles=self.cfg.data.use_titles)


def _get(cfg: RunConfig, key: str):
    section, _, name = key.partition(".")
    value = getattr(cfg, section)
    return getattr(value, name) if name else value

"""What the stages of one profile share: the config, the artifact root, the splits and the corpus.

    ws = Workspace(load_config("toy"))
    ws.train, ws.val, ws.test      # Split: training queries, validation slice held out of them, test
    ws.corpus                       # Corpus, streamed
    ws.folder("warmup_de")          # runs/<profile>/warmup_de
    ws.hash("warmup_de")            # config hash of that stage and everything upstream
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

from ..config import RunConfig, config_hash, section_dict

# Each stage depends on the config sections of its own and of every stage before it.
STAGE_SECTIONS = {
    "baselines": ("data", "model", "evaluate"),
    "warmup_de": ("data", "model", "evaluate", "warmup_de"),
    "warmup_ce": ("data", "model", "evaluate", "warmup_de", "warmup_ce"),
    "augment": ("data", "model", "evaluate", "warmup_de", "warmup_ce", "augment"),
    "joint": ("data", "model", "evaluate", "warmup_de", "warmup_ce", "augment", "joint"),
    "st_mnrl": ("data", "model", "evaluate"),
}
# Fields no output depends on (batch size), or that only stages with a cross-encoder read.
CROSS_ENCODER_ONLY = ("evaluate.rerank_depth", "model.ce_max_len", "model.ce_pooling", "model.ce_query_max_len")
# Switches added after stages were cached: hashed only when set away from their default, which
# reproduces the earlier behaviour on collections without answers, so those caches stay valid.
HASHED_WHEN_SET = {
    "data.answer_free_negatives": True,
    "model.ce_query_max_len": 0,
    "warmup_ce.loss": "listwise",
    "warmup_ce.schedule": "linear",
    "evaluate.relevance": "auto",
}
NOT_READ = {
    "baselines": ("evaluate.batch_size", "data.answer_free_negatives", *CROSS_ENCODER_ONLY),
    "warmup_de": ("evaluate.batch_size", *CROSS_ENCODER_ONLY),
    "augment": ("evaluate.batch_size",),
    "st_mnrl": ("evaluate.batch_size", *CROSS_ENCODER_ONLY),
}


class Workspace:
    def __init__(self, cfg: RunConfig, root: Path | str | None = None):
        self.cfg = cfg
        self.root = Path(root) if root is not None else Path(cfg.runtime.workdir) / cfg.profile
        if cfg.runtime.threads:
            import torch

            torch.set_num_threads(cfg.runtime.threads)

    def folder(self, name: str) -> Path:
        return self.root / name

    def hash(self, stage: str, extra: dict | None = None) -> str:
        base = stage.split("-")[0]
        sections = section_dict(self.cfg, *STAGE_SECTIONS[base])
        for key in NOT_READ.get(base, ("evaluate.batch_size",)):
            section, name = key.split(".")
            sections[section].pop(name, None)
        for key, default in HASHED_WHEN_SET.items():
            section, name = key.split(".")
            if section in sections and sections[section].get(name, default) == default:
                sections[section].pop(name, None)
        return config_hash(sections, extra=extra)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)

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

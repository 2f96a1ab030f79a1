"""What a finished stage folder holds, read in one place (the report, the explorer, the audit, the
study and later stages read folders through it; `artifacts.run_stage` writes them):

    manifest.json      config hash, commit, machine, precision, wall time (`artifacts`)
    metrics.json       the stage's test metrics, by system
    history.json       per-step training log (training stages)
    curves.json        validation curves drawn during training (joint)
    summary.json       augment's counts;  calibration.json: its calibration fit
    runs/<name>.trec   TREC runs, e.g. "bm25.test", "retriever.val"
    model/ retriever/ reranker/   saved models;  lists.parquet, candidates.parquet: augment's lists

    folder = StageFolder(ws.folder("warmup_de"))
    folder.metrics["warmup_de"], folder.run("warmup_de.test"), folder.has_run("warmup_de.val")
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import RqaError
from .runs import Run, read_trec_run


class StageFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def done(self) -> bool:
        """It has a readable manifest: the stage finished here."""
        return self.manifest is not None

    def json(self, name: str, required: bool = True):
        """`<name>.json` parsed; None when absent and not `required`, else a one-line RqaError."""
        path = self.path / f"{name}.json"
        if not path.exists():
            if not required:
                return None
            raise RqaError(f"{self.path.parent.name}/{name}.json is missing ({path}); run its chapter (or stage) first")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            if not required:
                return None
            raise RqaError(f"{path} is not valid JSON (a write cut short?); rerun its stage with --force") from None

    @property
    def manifest(self) -> dict | None:
        return self.json("manifest", required=False)

    @property
    def metrics(self) -> dict:
        return self.json("metrics")

    @property
    def history(self) -> list | None:
        return self.json("history", required=False)

    @property
    def curves(self) -> dict | None:
        return self.json("curves", required=False)

    def run_path(self, name: str) -> Path:
        return self.path / "runs" / f"{name}.trec"

    def has_run(self, name: str) -> bool:
        return self.run_path(name).exists()

    def run_names(self) -> list[str]:
        """The names of its runs, sorted ("bm25.test", "bm25.val", ...)."""
        return sorted(p.name[: -len(".trec")] for p in (self.path / "runs").glob("*.trec"))

    def run(self, name: str) -> Run:
        """The TREC run `runs/<name>.trec`."""
        return read_trec_run(self.run_path(name))

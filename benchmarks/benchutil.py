"""What the benchmarks share: SciFact from the ir_datasets cache, the machine's matmul peak, FLOP
counts of a BERT-like encoder, and memory readings. Not part of the kit; imported first by the
scripts beside it (`python benchmarks/<name>.py`), as importing it points IR_DATASETS_HOME at a
writable copy of the cache when it is unset."""

from __future__ import annotations

import os
import resource
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_IRDS = REPO.parent / "shared" / "ir_datasets"


def ensure_irds_home() -> str:
    """IR_DATASETS_HOME as set, else a writable copy of ../shared/ir_datasets in the temp folder.

    ir_datasets writes derived files (docs store, extracted corpus) beside the cached source, so it
    must not read the shared folder directly. Call before ir_datasets is imported.
    """
    home = os.environ.get("IR_DATASETS_HOME")
    if home:
        return home
    if not SHARED_IRDS.is_dir():
        raise SystemExit("set IR_DATASETS_HOME to a writable copy of the ir_datasets cache holding beir/scifact "
                         "(see benchmarks/README.md)")
    target = Path(tempfile.gettempdir()) / "rqakit_bench_irds"
    if not (target / ".copied").is_file():
        shutil.copytree(SHARED_IRDS, target, dirs_exist_ok=True)
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        (target / ".copied").touch()
    os.environ["IR_DATASETS_HOME"] = str(target)
    return str(target)


ensure_irds_home()  # before anything imports ir_datasets (its BEIR module reads the home at import)

from rqakit.data.collection import Doc  # noqa: E402


def scifact_docs(limit: int | None = None) -> Iterator[Doc]:
    """beir/scifact documents in collection order (title and text kept apart), at most `limit`."""
    import ir_datasets

    for count, record in enumerate(ir_datasets.load("beir/scifact").docs_iter()):
        if limit is not None and count >= limit:
            return
        yield Doc(record.doc_id, record.title, record.text)


def as_single_text(doc: Doc) -> Doc:
    """The doc as one untitled text "title text": the string a sentence-transformers model reads."""
    return Doc(doc.doc_id, "", f"{doc.title} {doc.text}" if doc.title else doc.text)


# -- the machine ------------------------------------------------------------------------------

def matmul_peaks() -> dict[str, float | None]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s}; bf16 is None on a CPU without native bf16 (emulated
    bf16 runs at a fraction of a GFLOP/s and would take minutes to time)."""
    from rqakit.plan import matmul_peak_gflops
    from rqakit.runtime import cpu_supports_bf16

    bf16 = matmul_peak_gflops(torch.bfloat16) if cpu_supports_bf16() else None
    return {"fp32": matmul_peak_gflops(torch.float32), "bf16": bf16}


def share_of_peak(gflops: float, peaks: dict, compute_dtype: torch.dtype) -> dict:
    """Achieved GFLOP/s over the matmul peak of the precision the work ran in."""
    name = "bf16" if compute_dtype == torch.bfloat16 else "fp32"
    return {"of": name, "share": round(gflops / peaks[name], 3) if peaks.get(name) else None}


def machine_state() -> dict:
    """Threads and load average: the machine is shared, so a reader can judge the numbers."""
    from rqakit.runtime import cpu_supports_bf16

    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "native_bf16": cpu_supports_bf16(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- FLOP counts --------------------------------------------------------------------------------

@dataclass
class EncoderShape:
    """A BERT-like encoder's config, whose FLOPs `rqakit.plan.flops_per_token` counts (the kit's one formula)."""

    config: object

    @classmethod
    def of(cls, model: torch.nn.Module) -> "EncoderShape":
        return cls(model.config)

    def forward_flops(self, lengths: Iterable[int]) -> float:
        """FLOPs of one forward over sequences of these (padded) lengths."""
        from rqakit.plan import flops_per_token

        return float(sum(flops_per_token(self.config, n) * n for n in lengths))


def padded_lengths(lengths: list[int], batch_size: int) -> list[int]:
    """Each row's length once padded as the kit pads: length-sorted batches, each to its own longest."""
    from rqakit.encode import length_sorted_batches

    out = []
    for rows in length_sorted_batches(lengths, batch_size):
        longest = max(lengths[i] for i in rows)
        out += [longest] * len(rows)
    return out

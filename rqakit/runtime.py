"""Where the kit runs: processes (torchrun / DDP), devices, and the one choice of precision.

    init_distributed()            # joins the process group under torchrun, else a no-op
    rank, world_size = world()
    device = pick_device("auto")  # cuda:LOCAL_RANK under torchrun on GPUs, cuda, or cpu
    compute_dtype(device)         # bf16 on CUDA (fp16 without bf16) and on bf16 CPUs, else fp32
    with autocast(device): ...    # mixed precision for training, in compute_dtype
    set_precision("fp32")         # runtime.precision: fp32 everywhere, from the next call on

Training and inference read the same `compute_dtype`: the training loop autocasts to it (fp16 with a
loss scaler), inference runs a copy of the model in it on CPU (`rqakit.encode`). The dtype is part of
every stage's hash (rqakit.stages.Workspace.hash) and of its manifest: a stage built in bf16 is never
served to an fp32 run, nor the other way round.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import torch.distributed as dist

from .config import check_choice
from .errors import RqaError


# ----------------------------------------------------------------------------- processes
def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def first_rank() -> bool:
    """Whether this process evaluates and publishes what a stage trained: rank 0, or the only one."""
    return world()[0] == 0


@contextlib.contextmanager
def all_cores():
    """torch on every core this process may use, for work rank 0 does while the other processes
    wait (torchrun gives each process one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def init_distributed() -> bool:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    if "RANK" not in os.environ or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def barrier() -> None:
    """Wait for every process (a no-op with one)."""
    if world()[1] > 1:
        dist.barrier()


def per_process(batch: int) -> int:
    """A global batch split evenly over the processes (one micro-batch each)."""
    _, world_size = world()
    if batch % world_size:
        raise RqaError(f"a batch of {batch} does not split over {world_size} processes: use a multiple of {world_size}")
    return batch // world_size


def gather_with_grad(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `t` (B, ...) from every process in rank order -> ((W*B, ...), this rank's offset).

    Uses the autograd-aware all_gather, so the loss on the gathered passages sends gradients back
    to the process that encoded them. Every process must pass the same B. One process: (t, 0).
    """
    if world()[1] == 1:
        return t, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(t.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * t.shape[0]


# ----------------------------------------------------------------------------- devices
def pick_device(name: str = "auto") -> torch.device:
    """"auto": this process's GPU under torchrun, else the first GPU, else the CPU."""
    if name == "auto":
        if dist.is_available() and dist.is_initialized() and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- precision
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512-BF16 or AMX-BF16)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_precision = "auto"


def set_precision(mode: str) -> None:
    """`runtime.precision` for this process: "auto" (the hardware's, below) or "fp32" everywhere."""
    global _precision
    check_choice("runtime.precision", mode)
    _precision = mode


def compute_dtype(device: str | torch.device, precision: str | None = None) -> torch.dtype:
    """bf16 on CUDA with bf16 and on bf16-capable CPUs, fp16 on older CUDA GPUs, fp32 otherwise
    (and always under `set_precision("fp32")`, or for `precision="fp32"`, which reads no state)."""
    device = torch.device(device)
    if (precision or _precision) == "fp32":
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16"."""
    return str(dtype).removeprefix("torch.")


def compute_dtype_name(device: str = "auto", precision: str | None = None) -> str:
    """The dtype stages compute in on `runtime.device`, by name ("bfloat16", "float32")."""
    return dtype_name(compute_dtype(pick_device(device), precision))


def autocast(device: torch.device, enabled: bool = True):
    """Autocast to `compute_dtype(device)`; fp32 master weights stay. A no-op in fp32."""
    dtype = compute_dtype(device) if enabled else torch.float32
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def loss_scaler(device: torch.device, enabled: bool = True):
    """A dynamic loss scaler where autocast runs in fp16 (the official code's AMP on V100s: fp16
    gradients underflow without one); None for bf16 and fp32, whose range needs none."""
    if enabled and compute_dtype(device) == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None

"""Cross-process helpers: gather embeddings with their gradients (cross-batch negatives)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def gather_with_grad(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `t` (B, ...) from every process in rank order -> ((W*B, ...), this rank's offset).

    Uses the autograd-aware all_gather, so the loss on the gathered passages sends gradients back
    to the process that encoded them. Every process must pass the same B. One process: (t, 0).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t, 0
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(t.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * t.shape[0]

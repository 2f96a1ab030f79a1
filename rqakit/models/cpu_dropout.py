"""Dropout for training on a CPU, where torch draws its masks one element at a time.

On a CPU, torch's dropout draws every mask element from its mt19937 generator on one thread (its
parallel MKL path is taken on Intel CPUs only). In a joint MiniLM step (4 queries x 8 passages,
three towers) that is 2.2 of 17.5 profiled seconds on 2 AMD cores, most of it on the attention
probabilities (B, heads, L, L). Here a mask comes from numpy's SFC64 generator, seeded by one
draw from torch's default generator per call, so `torch.manual_seed` and the RNG state saved in
checkpoints still fix every mask and a resumed run stays bit-identical. The law is dropout's:
each element is kept with probability 1 - p' and scaled by 1 / (1 - p), with p' = p rounded to a
multiple of 2^-16 (0.1 -> 0.100006). The masks are not torch's, so a run's dropout noise differs
from torch's as another seed's would. On other devices, and in eval mode, torch's own path runs;
`use(False)` (`runtime.dropout_masks=torch`) makes torch's path run everywhere, so training gives
torch's numbers bit for bit, at torch's speed.

`install(model)` puts it into a transformers encoder (or any module): its `nn.Dropout` modules,
and the dropout on attention probabilities through an attention function that is transformers'
SDPA whenever no dropout is asked (inference, GPUs) and SDPA's math path with this mask otherwise.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

ATTENTION = "rqakit_cpu_sdpa"   # the attention implementation's registered name
LEVELS = 1 << 16                # masks are drawn as int16: p is rounded to a multiple of 2^-16
_enabled = True                 # False: torch's own dropout everywhere (`use`)


def use(enabled: bool) -> None:
    """Draw CPU training masks with `cpu_dropout` (True, the default) or with torch (False), in
    every installed model of this process, from the next forward on."""
    global _enabled
    _enabled = bool(enabled)


def _kit_masks(x: torch.Tensor) -> bool:
    return _enabled and x.device.type == "cpu"


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of `x` (any shape) with a numpy-drawn mask: x / (1 - p) where kept, else 0."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
    if p == 0.0:
        return x
    seed = int(torch.randint(0, 2**62, (1,)))                       # torch's RNG governs the mask
    draws = np.random.Generator(np.random.SFC64(seed)).integers(
        -LEVELS // 2, LEVELS // 2, size=x.numel(), dtype=np.int16)  # uniform over int16
    keep = torch.from_numpy(draws).view(x.shape) >= round(p * LEVELS) - LEVELS // 2
    return torch.where(keep, x * (1.0 / (1.0 - p)), torch.zeros((), dtype=x.dtype))


class Dropout(nn.Dropout):
    """`nn.Dropout` that draws its CPU training masks with `cpu_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0 and _kit_masks(x):
            return cpu_dropout(x, self.p)
        return super().forward(x)


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention interface. query/key/value (B, heads, L, d_head) -> (B, L, heads, d_head).

    Without dropout, off the CPU, or after `use(False)`, it is `sdpa_attention_forward` itself. With dropout on a CPU it
    is SDPA's math path: softmax(q k^T * scaling + mask) with the numpy-drawn mask, times v. The
    mask is SDPA's: boolean (True = attend) or additive.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not dropout or not _kit_masks(query):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling                   # (B, heads, L, L)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    elif attention_mask is not None:
        weights = weights + attention_mask
    probs = cpu_dropout(torch.softmax(weights, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def install(model: nn.Module) -> nn.Module:
    """Swap `model`'s `nn.Dropout` modules for `Dropout`, and its SDPA attention for `attention`.

    Only models whose attention is SDPA change attention; eager or flash stay as they are.
    """
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, inplace=child.inplace))
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and getattr(config, "_attn_implementation", None) == "sdpa":
            _register()
            module.set_attn_implementation(ATTENTION)
    return model

"""One training loop for every stage: precision, accumulation, DDP, atomic checkpoints, resume.

A stage hands the loop a model whose `forward(batch)` returns a dict with a scalar "loss" (plus
any figures to log) and a *plan*: `plan[step]` is the list of micro-batches of one optimizer step,
fixed in advance from the seed. Because the plan, the RNG states, the optimizer and the scheduler
are all in the checkpoint, a run killed after step k and resumed reaches bit-identical weights to
a run that was never stopped (on CPU).

Under `torchrun` every rank takes micro-batches `rank::world` of each step and DDP averages the
gradients; the per-micro-batch loss is scaled so that one process and W processes with the same
global batch take the same step.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path, remove_stale, temporary_sibling
from .errors import RqaError
from .progress import Bar, emit  # tqdm that `rqakit reproduce` also sees from outside the kernel
from .runtime import autocast, barrier, loss_scaler, pick_device, world

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm", "layernorm")


@dataclass
class OptimSettings:
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0   # 0 with schedule "constant" = the official joint code's constant LR
    schedule: str = "constant"  # constant | linear (warm-up then linear decay to 0)
    clip: float = 1.0
    clip_per_tower: bool = False  # each top-level submodule's gradient norm clipped apart (default: one global norm)
    optimizer: str = "adamw"    # adamw (the paper's Adam with decoupled decay) | sgd (tests: no
                                # per-parameter normalisation, so loss scale errors show)
    towers: dict = field(default_factory=dict)  # {"ce": {"lr": 5e-6, "warmup_ratio": 0.1}}: a top-level
                                                # submodule's own lr and warm-up (same schedule after it)


class TrainingStopped(RuntimeError):
    """A run ended early on purpose (`stop_after`); its last checkpoint resumes it."""


@dataclass
class TrainResult:
    steps: int
    history: list[dict] = field(default_factory=list)   # one row per optimizer step
    evals: list[dict] = field(default_factory=list)     # one row per evaluation
    wall_time_s: float = 0.0                            # this call: the steps since the resume
    resumed_from: int = 0

    @property
    def steps_seconds(self) -> float:
        """Seconds of every optimizer step, those of earlier attempts included (from the history)."""
        return float(sum(row.get("seconds", 0.0) for row in self.history))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- optimizer
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights, none on biases and LayerNorm (official optimization.py)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if any(k in name for k in NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


FUSED_DEVICES = ("cpu", "cuda")   # where torch has a fused AdamW kernel


def make_optimizer(model: nn.Module, s: OptimSettings, total_steps: int):
    """The optimizer and its LR schedule (linear warm-up, then constant or linear decay to 0).

    AdamW runs torch's fused kernel where every parameter lives on a CPU or CUDA device: one pass
    over each tensor instead of a dozen element-wise ops. The update is the same up to float
    rounding. For the joint objective's 68 M parameters on 2 idle CPU cores: 0.07 s against 0.37 s
    for torch's CPU default (a for-loop), and 5 s for the latter when other jobs share the cores.
    """
    groups, warmups = param_groups(model, s.weight_decay), [s.warmup_ratio, s.warmup_ratio]
    for tower, own in s.towers.items():  # the tower's parameters leave the shared groups for their own
        mine = {id(p) for p in getattr(model, tower).parameters()}
        for group in groups[:2]:
            group["params"] = [p for p in group["params"] if id(p) not in mine]
        for group in param_groups(getattr(model, tower), s.weight_decay):
            groups.append({**group, "lr": own.get("lr", s.lr)})
            warmups.append(own.get("warmup_ratio", s.warmup_ratio))
    if s.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=s.lr)
    else:
        fused = all(p.device.type in FUSED_DEVICES for g in groups for p in g["params"])
        opt = torch.optim.AdamW(groups, lr=s.lr, fused=fused or None)
    def schedule(ratio: float):
        warm = int(round(ratio * total_steps))

        def factor(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            if s.schedule == "linear":
                return max(0.0, (total_steps - step) / max(1, total_steps - warm))
            return 1.0
        return factor

    factors = [schedule(r) for r in warmups] if s.towers else schedule(s.warmup_ratio)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factors)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load moments and step counts, keeping the implementation (fused, foreach) chosen here:
    torch's `load_state_dict` would take it from the checkpoint's groups."""
    chosen = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, flags in zip(optimizer.param_groups, chosen):
        group.update(flags)


# ----------------------------------------------------------------------------- plans
def make_plan(n_examples: int, *, batch_size: int, micro_batch_size: int, epochs: float, seed: int,
              drop_last: bool = True) -> list[list[list[int]]]:
    """Example indices for every step: `plan[step][micro] = [i, ...]`, reshuffled each epoch.

    A fractional epoch count takes the first steps of the last epoch. The tail that does not fill
    a batch is dropped, as the official reader does.
    """
    if n_examples < batch_size:
        raise RqaError(f"{n_examples} training examples cannot fill one batch of {batch_size}: lower the batch size")
    rng = np.random.default_rng(seed)
    per_epoch = n_examples // batch_size if drop_last else math.ceil(n_examples / batch_size)
    total = max(1, int(round(per_epoch * epochs)))
    plan = []
    while len(plan) < total:
        order = rng.permutation(n_examples).tolist()
        for b in range(per_epoch):
            batch = order[b * batch_size:(b + 1) * batch_size]
            plan.append([batch[i:i + micro_batch_size] for i in range(0, len(batch), micro_batch_size)])
            if len(plan) == total:
                break
    return plan


# ----------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    """Every generator's state as tensors and plain types, so a checkpoint loads with
    `weights_only=True` (numpy's MT19937 keys as a list of ints, not an array)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


KEEP_CHECKPOINTS = 2  # the newest and the one before: a fallback when the newest cannot be read


def save_checkpoint(folder: Path, *, model: nn.Module, optimizer, scheduler, step: int, history: list, evals: list,
                    scaler=None) -> None:
    """Write `folder/step-<k>/` atomically (temp name, then rename); keep the previous one too."""
    final = folder / f"step-{step:07d}"
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "rng": _rng_state(), "history": history, "evals": evals}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    with atomic_path(final) as tmp:  # replaces a damaged copy of this step, left by a fallback
        tmp.mkdir()
        torch.save(state, tmp / "state.pt")
    for old in checkpoints(folder)[:-KEEP_CHECKPOINTS]:   # renamed first: a kill mid-removal leaves a temporary
        doomed = temporary_sibling(old)
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    remove_stale(folder)
    emit("checkpoint", folder=str(folder), step=step)


def checkpoints(folder: Path | None) -> list[Path]:
    """Complete checkpoints of `folder`, oldest first."""
    if folder is None or not folder.exists():
        return []
    return sorted(p for p in folder.glob("step-*") if (p / "state.pt").exists())


def latest_checkpoint(folder: Path | None) -> Path | None:
    done = checkpoints(folder)
    return done[-1] if done else None


def load_checkpoint(folder: Path | None, device, log: Callable[[str], None] = print) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that reads back, newest first; a damaged one (a truncated or corrupt
    state.pt, or one holding anything but tensors and plain types) is skipped with a warning naming
    it, and with none readable the run starts fresh."""
    damaged = []
    for ckpt in reversed(checkpoints(folder)):
        try:
            state = torch.load(ckpt / "state.pt", map_location=device, weights_only=True)   # runs no pickled code
            if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "rng", "step"} <= set(state):
                raise ValueError("not a training checkpoint")
        except Exception as exc:  # UnpicklingError, EOFError, RuntimeError (zip), ValueError
            log(f"warning: checkpoint {ckpt / 'state.pt'} cannot be read ({type(exc).__name__}); "
                "falling back to the one before")
            damaged.append(ckpt)
            continue
        return ckpt, state
    if damaged:
        log(f"warning: no readable checkpoint in {folder}; training starts from step 0")
    return None, None


# ----------------------------------------------------------------------------- the loop
def tower_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each top-level tower (`de`, `ce`) that has one, before clipping:
    the global norm the clip reads is the root of their squares."""
    out = {}
    for name, child in model.named_children():
        grads = [p.grad.detach().float().norm() for p in child.parameters() if p.grad is not None]
        if grads:
            out[name] = float(torch.linalg.vector_norm(torch.stack(grads)))
    return out


def clip_gradients(model: nn.Module, trainable: list, optim: OptimSettings) -> float | None:
    """Clip the gradients to `optim.clip` and return their global norm before it (None: no clip).

    One norm over every trainable parameter, as the official code's global-norm clip: in joint
    training the re-ranker's gradient, several times the retriever's in the kit's runs, then sets
    how far both are scaled. `clip_per_tower`: each top-level submodule (`de`, `ce`) is clipped by
    its own norm, so one tower's gradient never scales the other's."""
    if not optim.clip:
        return None
    if not optim.clip_per_tower:
        return float(torch.nn.utils.clip_grad_norm_(trainable, optim.clip))
    groups = [list(child.parameters()) for child in model.children()] + [list(model.parameters(recurse=False))]
    norms = [torch.nn.utils.clip_grad_norm_(g, optim.clip) for g in
             ([p for p in group if p.grad is not None] for group in groups) if g]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def train(model: nn.Module, plan: Sequence[Sequence[Any]], collate: Callable[[Any], Any], *,
          optim: OptimSettings, device: torch.device | None = None, precision: bool = True,
          checkpoint_dir: Path | None = None, checkpoint_every: int = 0, stop_after: int | None = None,
          eval_fn: Callable[[int], dict] | None = None, eval_every: int = 0, desc: str = "train",
          seed: int = 0, log: Callable[[str], None] = print) -> TrainResult:
    """Run `plan` (steps of micro-batches of examples) on `model`, resuming from `checkpoint_dir`.

    `collate(micro_batch) -> batch` turns examples into tensors; `model(batch)` returns a dict with
    "loss" (the mean over the micro-batch's queries) and other scalars to log. `stop_after` ends the
    run after that many steps (used to simulate a kill in tests).
    """
    device = device or pick_device()
    rank, world_size = world()
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    total = len(plan)
    optimizer, scheduler = make_optimizer(model, optim, total)
    scaler = loss_scaler(device, precision)   # fp16 only: scale the loss, unscale before clipping
    history, evals, start = [], [], 0
    ckpt, state = load_checkpoint(checkpoint_dir, device, log)
    if ckpt is not None:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history, evals, start = state["history"], state["evals"], state["step"]
        log(f"[{desc}] resumed from step {start} of {total}")
    else:
        seed_everything(seed + rank)
    ddp = world_size > 1
    # find_unused_parameters: backbones carry a pooler that the raw-[CLS] heads never read
    runner = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if ddp else model
    if eval_fn is not None and eval_every and start == 0 and not evals:
        evals.append({"step": 0, **eval_fn(0)})
    t0 = time.time()

    bar = Bar(range(start, total), desc=desc, initial=start, total=total, disable=rank != 0, dynamic_ncols=True)
    model.train()
    for step in bar:
        micro = plan[step]
        if len(micro) % world_size:
            raise RqaError(f"{len(micro)} micro-batches per step do not split over {world_size} processes: "
                           "make batch_queries / micro_batch_queries a multiple of the process count")
        mine = micro[rank::world_size]
        logs: dict[str, float] = {}
        t_step = time.time()
        for i, examples in enumerate(mine):
            batch = collate(examples)
            sync = contextlib.nullcontext() if (not ddp or i == len(mine) - 1) else runner.no_sync()
            with sync:
                with autocast(device, precision):
                    out = runner(batch)
                loss = out["loss"].float() * (world_size / len(micro))
                (loss if scaler is None else scaler.scale(loss)).backward()
            for k, v in out.items():
                logs[k] = logs.get(k, 0.0) + float(v.detach()) / len(mine)
        if scaler is not None:
            scaler.unscale_(optimizer)   # clip the true gradients
        towers = tower_grad_norms(model)  # before the clip: how often, and where, it fires
        norm = clip_gradients(model, trainable, optim)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)       # skipped when the fp16 gradients overflowed
            scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"step": step + 1, "lr": scheduler.get_last_lr()[0], "seconds": time.time() - t_step, **logs}
        if norm is not None:
            row["grad_norm"] = float(norm)
        row.update({f"grad_norm_{name}": value for name, value in towers.items()})
        history.append(row)
        bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}", refresh=False)
        done = step + 1
        if eval_fn is not None and eval_every and (done % eval_every == 0 or done == total):
            model.eval()
            evals.append({"step": done, **eval_fn(done)})
            model.train()
        if checkpoint_dir is not None and rank == 0 and (
                (checkpoint_every and done % checkpoint_every == 0) or done == total):
            save_checkpoint(checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                            step=done, history=history, evals=evals, scaler=scaler)
        barrier()
        if stop_after is not None and done >= stop_after:
            break
    bar.close()
    model.eval()
    return TrainResult(steps=len(history), history=history, evals=evals, wall_time_s=time.time() - t0, resumed_from=start)

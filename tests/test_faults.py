"""SIGKILL a stage command at random moments, rerun after each kill, and require the same results.

`rqakit stage joint:dynamic` on a small toy config runs every stage (baselines, warmup_de,
warmup_ce, augment, joint) with a checkpoint after every training step. An uninterrupted run gives
the reference timeline (when each stage started and finished, when each checkpoint was written).
Kill moments are drawn uniformly over that timeline with a seeded RNG and sorted; each is reached
again as "the last mark before it, then that many seconds", watched in the rerun's own progress
events, so a slower rerun (a busy machine) is still killed at the same place and the kills land
across stages and between checkpoints.

After every kill nothing may look complete while partial: every stage folder with a manifest holds
exactly the reference's files, and every `step-*` checkpoint reads back. The
last rerun is not killed; its metrics.json, TREC runs and safetensors weights must equal the
reference's, bit for bit.

RQAKIT_FAULT_KILLS (default 3) sets the number of kills, RQAKIT_FAULT_SEED (default 0) the seed.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("RQAKIT_FAULT_KILLS", "3"))
SEED = int(os.environ.get("RQAKIT_FAULT_SEED", "0"))
STAGE = "joint:dynamic"
SMALL = ["data.max_train_queries=48", "warmup_de.epochs=3", "warmup_ce.epochs=3", "joint.batch_queries=8",
         "joint.micro_batch_queries=4", "joint.checkpoint_every=1", "joint.eval_every=0"]


def start(workdir: Path, progress: Path) -> subprocess.Popen:
    """The stage command, its events in `progress` and its stderr beside it (a pipe could fill up)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RQAKIT_PROGRESS": str(progress), "HF_HUB_OFFLINE": "1"}
    with open(progress.with_suffix(".err"), "w") as err:
        return subprocess.Popen([sys.executable, "-m", "rqakit.cli", "stage", STAGE, "--profile", "toy", "--set",
                                 f"runtime.workdir={workdir}", *SMALL], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def finish(proc: subprocess.Popen, progress: Path) -> None:
    assert proc.wait(timeout=900) == 0, progress.with_suffix(".err").read_text()[-2000:]


def events(progress: Path) -> list[dict]:
    if not progress.exists():
        return []
    return [json.loads(line) for line in progress.read_text().splitlines() if line.endswith("}")]


def marks(progress: Path, root: Path) -> list[tuple[tuple, float]]:
    """A run's timeline: (mark, time) in order, a mark being ("running" | "done", folder) for a
    stage or ("ckpt", folder, step) for a checkpoint, folders relative to the workdir."""
    out = []
    for e in events(progress):
        if e["kind"] == "stage" and e["state"] in ("running", "done"):
            out.append(((e["state"], str(Path(e["folder"]).relative_to(root))), e["t"]))
        elif e["kind"] == "checkpoint":
            out.append((("ckpt", str(Path(e["folder"]).relative_to(root)), e["step"]), e["t"]))
    return out


def durable(mark: tuple) -> tuple | None:
    """What a mark leaves on disk for the next run, in `durable_state`'s terms."""
    if mark[0] == "done":
        return ("stage", mark[1])
    if mark[0] == "ckpt":
        return mark
    return None


def published(root: Path) -> list[Path]:
    """Stage folders under their final name: those with a manifest, outside temporaries."""
    found = []
    for folder, dirs, names in os.walk(root):   # links (a `latest` pointer) are not followed
        dirs[:] = [d for d in dirs if ".tmp-" not in d and not d.endswith(".work")]
        if "manifest.json" in names:
            found.append(Path(folder))
    return sorted(found)


def durable_state(root: Path) -> set[tuple]:
    state = {("stage", str(p.relative_to(root))) for p in published(root)}
    for ckpt in root.rglob("*.work/ckpt/step-*"):
        state.add(("ckpt", str(ckpt.parent.relative_to(root)), int(ckpt.name.split("-")[1])))
    return state


def landed(progress: Path) -> str:
    """Where a killed run was: the stage it had started and the last step it had checkpointed."""
    stage, step = None, None
    for e in events(progress):
        if e["kind"] == "stage" and e["state"] == "running":
            stage, step = Path(e["folder"]).name, None
        elif e["kind"] == "checkpoint":
            step = e["step"]
    if stage is None:
        return "start-up"
    return stage + (f" after checkpoint {step}" if step else " (no checkpoint written by this run)")


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def assert_nothing_partial_looks_complete(root: Path, reference: Path) -> None:
    for folder in published(root):
        twin = reference / folder.relative_to(root)
        assert files(folder) == files(twin), f"{folder} is published but partial"
    for ckpt in root.rglob("*.work/ckpt/step-*"):
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        assert {"model", "optimizer", "step"} <= set(state), ckpt


def assert_same_results(root: Path, reference: Path) -> int:
    compared = 0
    mine = [p.relative_to(root) for p in published(root)]
    assert mine == [p.relative_to(reference) for p in published(reference)]
    for name in mine:
        folder, ref = root / name, reference / name
        assert files(folder) == files(ref), folder
        for file in sorted(files(ref)):
            if file.endswith("metrics.json"):
                assert json.loads((folder / file).read_text()) == json.loads((ref / file).read_text()), folder / file
            elif file.endswith(".trec"):
                assert (folder / file).read_bytes() == (ref / file).read_bytes(), folder / file
            elif file.endswith(".safetensors"):
                a, b = load_file(str(folder / file)), load_file(str(ref / file))
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder / file
            else:
                continue
            compared += 1
    return compared


def kill_at(proc: subprocess.Popen, progress: Path, root: Path, mark: tuple | None, delay: float) -> bool:
    """SIGKILL `proc` `delay` seconds after it emits `mark` (after its first event when mark is
    None, after its start when mark is "spawn"); False when it finished first."""
    started, seen = time.time(), None
    while proc.poll() is None:
        now = time.time()
        if seen is None:
            if mark == "spawn":
                seen = started
            else:
                found = marks(progress, root)
                hits = [t for m, t in found if m == mark] if mark is not None else [t for _, t in found[:1]]
                seen = hits[0] if hits else None
        if seen is not None and now >= seen + delay:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_results(tmp_path):
    # the reference: one uninterrupted run, and its timeline on its own clock
    root, reference = tmp_path / "killed", tmp_path / "reference"
    spawned = time.time()
    finish(start(reference, tmp_path / "reference.jsonl"), tmp_path / "reference.jsonl")
    total = time.time() - spawned
    timeline = [(m, t - spawned) for m, t in marks(tmp_path / "reference.jsonl", reference)]

    # kill moments uniform over the reference timeline; each is reached again as "this mark, then
    # that many seconds", so a slower or faster rerun is still killed at the same place
    rng = random.Random(SEED)
    kills, attempts = [], 0
    for moment in sorted(rng.uniform(0.5, total) for _ in range(KILLS)):
        state = durable_state(root) if root.exists() else set()
        done = [i for i, (m, _) in enumerate(timeline) if durable(m) in state]
        resume = max(done) if done else -1                 # where the rerun picks up
        target = max([i for i, (_, t) in enumerate(timeline) if t <= moment], default=-1)
        if target > resume:
            mark, delay = timeline[target][0], moment - timeline[target][1]
        elif resume >= 0:
            mark, delay = None, max(0.0, moment - timeline[resume][1])
        else:
            mark, delay = "spawn", moment
        attempts += 1
        progress = tmp_path / f"run-{attempts}.jsonl"
        proc = start(root, progress)
        if not kill_at(proc, progress, root, mark, delay):
            finish(proc, progress)                       # it completed before the moment came
            break
        kills.append({"timeline_s": round(moment, 1), "landed": landed(progress)})
        if root.exists():
            assert_nothing_partial_looks_complete(root, reference)

    finish(start(root, tmp_path / "final.jsonl"), tmp_path / "final.jsonl")
    compared = assert_same_results(root, reference)
    summary = {"kills": len(kills), "requested": KILLS, "seed": SEED, "reference_s": round(total, 1),
               "files_compared": compared, "where": kills}
    print("fault test:", json.dumps(summary))
    (Path(os.environ.get("RQAKIT_FAULT_REPORT", tmp_path / "faults.json"))).write_text(json.dumps(summary, indent=2))
    assert kills, "no kill landed: the run finished before the first moment"
    assert compared >= 10

"""SIGKILL a stage command at random moments, rerun after each kill, and require the same results.

`rqakit stage joint:dynamic` on a small toy config runs every stage (baselines, warmup_de,
warmup_ce, augment, joint) with a checkpoint after every training step. An uninterrupted run gives
the reference timeline (when each stage finished, when each checkpoint was written). Kill moments
are drawn uniformly over that timeline with a seeded RNG and sorted; each rerun is killed when it
reaches the next one (its start-up plus the distance from the last durable point it resumes from),
so the kills land across stages and between checkpoints rather than only in the first seconds.

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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "RQAKIT_PROGRESS": str(progress), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "rqakit.cli", "stage", STAGE, "--profile", "toy", "--set",
                             f"runtime.workdir={workdir}", *SMALL], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def events(progress: Path) -> list[dict]:
    if not progress.exists():
        return []
    return [json.loads(line) for line in progress.read_text().splitlines() if line.endswith("}")]


def durable_marks(progress: Path, spawned: float, root: Path) -> dict[tuple, float]:
    """What a run leaves that the next one resumes from, with its time on the run's clock:
    ("stage", folder) when a stage folder was published, ("ckpt", folder, step) per checkpoint
    (folders relative to the workdir, so that two workdirs compare)."""
    marks = {}
    for e in events(progress):
        if e["kind"] == "stage" and e["state"] == "done":
            marks[("stage", str(Path(e["folder"]).relative_to(root)))] = e["t"] - spawned
        elif e["kind"] == "checkpoint":
            marks[("ckpt", str(Path(e["folder"]).relative_to(root)), e["step"])] = e["t"] - spawned
    return marks


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
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
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


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_results(tmp_path):
    # the reference: one uninterrupted run, and its timeline
    spawned = time.time()
    proc = start(tmp_path / "reference", tmp_path / "reference.jsonl")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    total = time.time() - spawned
    timeline = durable_marks(tmp_path / "reference.jsonl", spawned, tmp_path / "reference")
    first = min(e["t"] for e in events(tmp_path / "reference.jsonl")) - spawned   # start-up: imports, config

    rng = random.Random(SEED)
    moments = sorted(rng.uniform(1.0, total) for _ in range(KILLS))
    root, reference = tmp_path / "killed", tmp_path / "reference"
    kills, attempts = [], 0
    for moment in moments:
        state = durable_state(root) if root.exists() else set()
        resume_from = max([first] + [timeline.get(mark, 0.0) for mark in state])
        delay = max(0.5, first + moment - resume_from)
        attempts += 1
        progress = tmp_path / f"run-{attempts}.jsonl"
        proc = start(tmp_path / "killed", progress)
        try:
            proc.wait(timeout=delay)
            finished = True   # it completed before the moment came
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            finished = False
        if finished:
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
            break
        proc.stderr.close()
        kills.append({"after_s": round(delay, 1), "timeline_s": round(moment, 1), "landed": landed(progress)})
        if root.exists():
            assert_nothing_partial_looks_complete(root, reference)

    final = start(tmp_path / "killed", tmp_path / "final.jsonl")
    _, err = final.communicate(timeout=900)
    assert final.returncode == 0, err[-2000:]
    compared = assert_same_results(root, reference)
    summary = {"kills": len(kills), "requested": KILLS, "seed": SEED, "reference_s": round(total, 1),
               "files_compared": compared, "where": kills}
    print("fault test:", json.dumps(summary))
    (Path(os.environ.get("RQAKIT_FAULT_REPORT", tmp_path / "faults.json"))).write_text(json.dumps(summary, indent=2))
    assert kills, "no kill landed: the run finished before the first moment"
    assert compared >= 10

"""Shared fixtures: a private ir_datasets home for the test session, and SciFact cached in it."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Tests run tiny models: one thread is faster than two (no OpenMP hand-offs), and much faster
# when another process shares the cores.
torch.set_num_threads(1)

# ir_datasets fixes its cache paths when it is first imported, so the home is chosen here,
# before any test module imports it: one empty, writable folder per session.
SESSION_HOME = Path(tempfile.mkdtemp(prefix="rqakit-irds-"))
os.environ["IR_DATASETS_HOME"] = str(SESSION_HOME)
# Every other cache a test may fill lives in one temporary folder too, never under ~/.cache:
# the kit's backbones (RQAKIT_CACHE), Hugging Face, matplotlib and anything honouring XDG.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="rqakit-cache-"))
for _name, _sub in (("RQAKIT_CACHE", "rqakit"), ("HF_HOME", "huggingface"), ("MPLCONFIGDIR", "matplotlib"),
                    ("XDG_CACHE_HOME", "xdg")):
    os.environ[_name] = str(SESSION_CACHE / _sub)
# The shared cache sits beside the repository (../shared/ir_datasets), as on CI.
SCIFACT_CACHE = Path(os.environ.get("RQAKIT_SCIFACT_CACHE") or Path(__file__).resolve().parents[2] / "shared" / "ir_datasets")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def scifact_home() -> Path:
    """IR_DATASETS_HOME with a copy of the pre-populated SciFact cache (data/README.md)."""
    if not (SCIFACT_CACHE / "beir" / "scifact" / "source.zip").is_file():
        pytest.fail(f"no SciFact cache at {SCIFACT_CACHE}; set RQAKIT_SCIFACT_CACHE to a folder holding beir/scifact/source.zip")
    shutil.copytree(SCIFACT_CACHE, SESSION_HOME, dirs_exist_ok=True)
    os.environ["IR_DATASETS_HOME"] = str(SESSION_HOME)
    return SESSION_HOME


# A small slice of the toy profile: every stage in seconds (tests/test_stages.py, test_explore.py, test_audit.py).
SMALL_TOY = {"data.max_train_queries": 48, "joint.eval_every": 2, "joint.checkpoint_every": 1,
             "joint.batch_queries": 8, "joint.micro_batch_queries": 4, "joint.epochs": 0.5}


@pytest.fixture(scope="session")
def toy_ws(tmp_path_factory):
    """A Workspace of the small toy slice in a temporary workdir, shared by the session: a stage
    trained by one test is cached for the others."""
    from rqakit.config import load_config
    from rqakit.stages import Workspace

    cfg = load_config("toy", {**SMALL_TOY, "runtime.workdir": str(tmp_path_factory.mktemp("toy_runs"))})
    return Workspace(cfg)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A private RQAKIT_CACHE, so the tiny backbone is built afresh from code."""
    previous = os.environ.get("RQAKIT_CACHE")
    os.environ["RQAKIT_CACHE"] = str(tmp_path_factory.mktemp("rqakit_cache"))
    yield
    if previous is None:
        os.environ.pop("RQAKIT_CACHE")
    else:
        os.environ["RQAKIT_CACHE"] = previous


"""requirements.lock (pip, exact pins) and environment.yml (conda, GPU) list the same packages."""
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of the GPU builds -> the PyPI names pinned in requirements.lock
CONDA_TO_PYPI = {"pytorch-gpu": "torch", "faiss-gpu": "faiss-cpu"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[norm(name)] = version
    return pins


def env_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                name, version = item.split("==")
                pins[norm(name)] = version
        elif "=" in dep:
            name, version = dep.split("=")[:2]
            if name != "python":
                pins[norm(CONDA_TO_PYPI.get(name, name))] = version
    return pins


def direct_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {norm(re.split(r"[<>=\[ ;]", d)[0]) for d in deps}


def test_every_lock_line_is_an_exact_pin_and_torch_is_the_cpu_release():
    pins = lock_pins()
    assert pins["torch"] == "2.13.0"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", v) for v in pins.values())


def test_environment_yml_lists_the_direct_dependencies_at_the_locked_versions():
    lock, env = lock_pins(), env_pins()
    assert set(env) == direct_dependencies()
    mismatched = {name: (env[name], lock.get(name)) for name in env if lock.get(name) != env[name]}
    assert not mismatched, mismatched


def test_every_direct_dependency_is_locked():
    assert direct_dependencies() <= set(lock_pins())


def lab_command(uid: int) -> str:
    """The `make lab` line, printed (not run) for an account with this uid."""
    import subprocess

    out = subprocess.run(["make", "-n", "-C", str(ROOT), "lab", f"LAB_UID={uid}", "VENV=/nonexistent-venv",
                          "IR_DATASETS_HOME=/nonexistent-irds"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if "jupyter lab" in line)


def test_make_lab_allows_root_only_as_root():
    assert "--allow-root" in lab_command(0)
    assert "--allow-root" not in lab_command(1000)
    assert "make lab" in (ROOT / "README.md").read_text()


def test_the_test_session_writes_caches_only_under_temporary_folders():
    import os
    import tempfile

    from rqakit.models.backbone import cache_dir

    tmp = Path(tempfile.gettempdir()).resolve()
    for name in ("RQAKIT_CACHE", "HF_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME", "IR_DATASETS_HOME"):
        assert Path(os.environ[name]).resolve().is_relative_to(tmp), name
    assert cache_dir().resolve().is_relative_to(tmp)

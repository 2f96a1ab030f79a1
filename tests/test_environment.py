"""requirements.lock (pip, exact pins) and environment.yml (conda, GPU) list the same packages."""
import re
import tomllib
from pathlib import Path

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

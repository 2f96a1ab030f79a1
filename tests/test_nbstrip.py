"""Running a notebook in JupyterLab leaves git status clean: the clean filter strips outputs."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat

from rqakit.nbstrip import strip

ROOT = Path(__file__).resolve().parents[1]


def executed_copy(path: Path) -> dict:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
            cell["execution_count"] = 7
            cell["metadata"]["execution"] = {"iopub.status.busy": "2026-12-05T10:00:00Z"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_stripping_an_executed_notebook_gives_back_the_committed_file():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        committed = json.loads(path.read_text())
        assert strip(executed_copy(path)) == committed, path.name
        nbformat.validate(nbformat.from_dict(strip(executed_copy(path))))


def test_with_the_filter_registered_no_output_reaches_a_commit(tmp_path):
    """git diff shows nothing and `git add` stages nothing (git status may list the file until
    then: the size it recorded differs, the content after the filter does not)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@example.org"), git("config", "user.name", "t")
    git("config", "filter.rqakit-notebook.clean", f"{sys.executable} -m rqakit.nbstrip")
    (tmp_path / ".gitattributes").write_text((ROOT / ".gitattributes").read_text())
    (tmp_path / "notebooks").mkdir()
    source = ROOT / "notebooks" / "explorer.ipynb"
    (tmp_path / "notebooks" / "explorer.ipynb").write_text(source.read_text())
    git("add", "-A"), git("commit", "-qm", "notebook")
    (tmp_path / "notebooks" / "explorer.ipynb").write_text(json.dumps(executed_copy(source), indent=1))
    assert git("diff").stdout == ""
    git("add", "-A")
    assert git("status", "--porcelain").stdout == "" and git("diff", "--cached").stdout == ""

"""A git clean filter for the notebooks: outputs, execution counts and run metadata stripped.

`make setup` registers it (`git config filter.rqakit-notebook.clean ...`; `.gitattributes` names
the notebooks), so running a notebook in JupyterLab, which saves its outputs into the file,
leaves `git status` clean and never puts outputs into a commit.

    python -m rqakit.nbstrip < notebooks/explorer.ipynb     # the notebook as git stores it
"""
from __future__ import annotations

import json
import sys

KEEP_CELL_METADATA = ("tags",)          # papermill's parameters / imports tags


def strip(notebook: dict) -> dict:
    """The notebook with every code cell's outputs and execution count cleared, and cell and
    notebook metadata cut to what the kit reads (tags; kernelspec and language)."""
    for cell in notebook.get("cells", []):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    meta = notebook.get("metadata", {})
    notebook["metadata"] = {k: meta[k] for k in ("kernelspec", "language_info") if k in meta}
    if "language_info" in notebook["metadata"]:
        notebook["metadata"]["language_info"] = {"name": notebook["metadata"]["language_info"].get("name", "python")}
    return notebook


def main() -> int:
    text = sys.stdin.read()
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError:       # not a notebook git can read as one: store it as it is
        sys.stdout.write(text)
        return 0
    sys.stdout.write(json.dumps(strip(notebook), indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

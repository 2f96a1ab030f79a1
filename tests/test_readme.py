"""The README restates no number by hand, and no committed document cites the stage cache or a
path outside the repository."""
import re
from pathlib import Path

from rqakit.report.readme import END, START, results_block

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_results_are_the_committed_report_s():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START): text.index(END) + len(END)]
    assert block == results_block("scifact"), "run `python -m rqakit.report.readme` after regenerating reports/scifact"


def test_no_document_cites_the_cache_or_a_path_outside_the_repository():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
    for path in docs:
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path
        cited = [line for line in text.splitlines() if "rqakit " not in line          # commands may name the cache
                 and re.search(r"runs/[\w.-]+/[\w.-]+/(latest|[0-9a-f]{12})", line)]  # a cached result's file
        assert not cited, (path, cited)

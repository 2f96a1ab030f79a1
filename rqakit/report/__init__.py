"""The report of a profile: the kit's numbers as tidy rows, tables (Tables 2-4 and the list-size
study), figures, and the paper's own numbers in side tables apart from the kit's.

    from rqakit.report import build_report
    build_report(Workspace(cfg), "reports/toy")    # results.json, tables/, figures/, report.md
"""
from .build import build_report, refresh_wall_times, update_run_rows
from .chapter import is_current, read_chapter, write_chapter

__all__ = ["build_report", "refresh_wall_times", "update_run_rows", "is_current", "read_chapter", "write_chapter"]

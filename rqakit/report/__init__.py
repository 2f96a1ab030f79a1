"""The report of a profile: the kit's numbers as tidy rows, tables (Tables 2-4 and the list-size
study), figures, and the paper's own numbers in side tables apart from the kit's.

    from rqakit.report import build_report
    build_report(Workspace(cfg), "reports/toy")    # results.json, tables/, figures/, report.md

Submodules load on first use, so a notebook that only writes its chapter record stays light.
"""
from importlib import import_module

_EXPORTS = {"build_report": "build", "refresh_wall_times": "build", "refresh_study_summary": "build",
            "update_run_rows": "build",
            "is_current": "chapter", "read_chapter": "chapter", "write_chapter": "chapter",
            "work_from_repository_root": "chapter", "open_chapter": "chapter", "quiet_libraries": "chapter"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A reproduction anyone can check: a fresh run's results against a profile's committed ones.

Each profile's committed `reports/<profile>/results.json` holds its expected values. `rqakit
reproduce` runs the chapters into a scratch folder (`<workdir>/<profile>/report`, never the
committed one) and compares the science rows (every table but the run timings) one by one:

    c = compare(expected_rows, fresh_rows, tolerance=0.0)
    c["rows"]          # table, system, seed, metric, expected, fresh, diff, within
    c["within"]        # every compared row within the tolerance

The tolerance depends on the precision: the toy computes in fp32 on every host and must match
exactly; a real backbone trained in the same precision on another CPU lands near, not on, the
expected values (kernels sum in another order and training amplifies it); across precisions the
differences are shown and not judged. `record` appends one line per reproduction to the report's
log, `reproductions.json`, rendered in `reproductions.md`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd

from .atomic import write_json
from .errors import RqaError

SCIENCE_TABLES = ("retrieval", "rerank", "ablation", "listsize", "paired")
EXACT = 1e-9                       # float formatting noise, nothing more
TOLERANCE = {"toy": EXACT}         # a profile not named here: SAME_PRECISION
SAME_PRECISION = 0.03              # a seed's nDCG@10 moved by up to 0.024 between CPUs and precisions


def science_rows(rows: list[dict]) -> dict[tuple, float]:
    return {(r["table"], r["system"], r["seed"], r["metric"]): float(r["value"]) for r in rows
            if r["table"] in SCIENCE_TABLES}


def tolerance_for(profile: str, expected_precision: str | None, fresh_precision: str | None) -> float | None:
    """The largest |fresh - expected| a row may show; None when the precisions differ (not judged)."""
    if expected_precision and fresh_precision and expected_precision != fresh_precision:
        return None
    return TOLERANCE.get(profile, SAME_PRECISION)


def compare(expected: list[dict], fresh: list[dict], tolerance: float | None) -> dict:
    """Row by row: the science rows of `expected` against those of `fresh` (tidy results rows)."""
    want, got = science_rows(expected), science_rows(fresh)
    rows = []
    for key in sorted(set(want) | set(got), key=lambda k: tuple("" if v is None else str(v) for v in k)):
        e, f = want.get(key), got.get(key)
        diff = None if e is None or f is None else f - e
        within = diff is not None and (tolerance is None or abs(diff) <= tolerance)
        rows.append({"table": key[0], "system": key[1], "seed": key[2], "metric": key[3], "expected": e,
                     "fresh": f, "diff": diff, "within": within})
    frame = pd.DataFrame(rows)
    compared = frame.dropna(subset=["diff"])
    return {"rows": rows, "tolerance": tolerance, "compared": len(compared),
            "missing": int(frame["fresh"].isna().sum()), "extra": int(frame["expected"].isna().sum()),
            "exact": int((compared["diff"].abs() <= EXACT).sum()),
            "max_abs_diff": float(compared["diff"].abs().max()) if len(compared) else math.nan,
            "within": bool(frame["within"].all())}


def check_table(result: dict, limit: int = 20) -> str:
    """The rows that differ beyond float noise (at most `limit`), as text for the terminal."""
    differing = [r for r in result["rows"] if r["diff"] is None or abs(r["diff"]) > EXACT]
    tol = "not judged (other precision)" if result["tolerance"] is None else f"{result['tolerance']:g}"
    lines = [f"check: {result['compared']} rows compared, {result['exact']} exact, max |diff| "
             f"{result['max_abs_diff']:.4g}, tolerance {tol}; {result['missing']} expected rows missing, "
             f"{result['extra']} new rows: {'MATCH' if result['within'] else 'DIFFERS'}"]
    for r in sorted(differing, key=lambda r: -abs(r["diff"] or math.inf))[:limit]:
        seed = "" if r["seed"] is None else f" s{r['seed']}"
        fmt = lambda v: "missing" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"  {r['table']}/{r['system']}{seed} {r['metric']}: expected {fmt(r['expected'])}, "
                     f"fresh {fmt(r['fresh'])}{'' if r['within'] else '  <- beyond tolerance'}")
    return "\n".join(lines)


def check(expected_dir: Path, fresh_dir: Path, profile: str) -> dict:
    """Compare `fresh_dir/results.json` with the committed `expected_dir/results.json`."""
    paths = {"expected": Path(expected_dir) / "results.json", "fresh": Path(fresh_dir) / "results.json"}
    for what, path in paths.items():
        if not path.exists():
            raise RqaError(f"no {what} results at {path.resolve()}; "
                           + ("the profile has no committed report to check against" if what == "expected"
                              else "the reproduction did not reach its report chapter"))
    stamps = {what: _precision(Path(path).parent) for what, path in paths.items()}
    result = compare(json.loads(paths["expected"].read_text()), json.loads(paths["fresh"].read_text()),
                     tolerance_for(profile, stamps["expected"], stamps["fresh"]))
    return {**result, "expected_precision": stamps["expected"], "fresh_precision": stamps["fresh"]}


def _precision(report_dir: Path) -> str | None:
    record = report_dir / "07_report.json"
    if not record.exists():
        return None
    return json.loads(record.read_text()).get("results", {}).get("stamp", {}).get("precision")


def log_entry(result: dict, *, machine: str, commit: str, label: str = "") -> dict:
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine, "precision": result["fresh_precision"],
            "commit": commit, "rows_compared": result["compared"], "exact": result["exact"],
            "max_abs_diff": result["max_abs_diff"], "within_tolerance": result["within"],
            "tolerance": result["tolerance"], "note": label}


def record(report_dir: Path, entry: dict) -> Path:
    """Append `entry` to `reproductions.json` and render `reproductions.md` beside it."""
    path = Path(report_dir) / "reproductions.json"
    log = json.loads(path.read_text()) if path.exists() else []
    log.append(entry)
    write_json(path, log)
    render_log(report_dir)
    return path


def render_log(report_dir: Path) -> Path:
    log = json.loads((Path(report_dir) / "reproductions.json").read_text())
    frame = pd.DataFrame(log, columns=["date", "machine", "precision", "commit", "rows_compared", "exact",
                                       "max_abs_diff", "within_tolerance", "note"])
    from .report.tables import markdown_table

    text = ("# Reproduction log\n\nEach run that reproduced this report, the machine and precision it ran in, and "
            "how far its results landed from the committed ones (`rqakit reproduce --record`).\n\n"
            + markdown_table(frame, "{:.4g}") + "\n")
    out = Path(report_dir) / "reproductions.md"
    out.write_text(text)
    return out

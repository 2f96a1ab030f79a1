"""A reproduction checked against a committed report (rqakit.check): rows compared one by one,
tolerance by precision, and the reproduction log."""
import json

import pytest

from rqakit import check


def rows(**values):
    return [{"table": t, "system": s, "seed": seed, "metric": "nDCG@10", "value": v}
            for (t, s, seed), v in values.items()]


EXPECTED = [{"table": "retrieval", "system": "bm25", "seed": None, "metric": "nDCG@10", "value": 0.5},
            {"table": "retrieval", "system": "dynamic", "seed": 1, "metric": "nDCG@10", "value": 0.6},
            {"table": "run", "system": "reproduce", "seed": None, "metric": "wall_time_s", "value": 100.0}]


def test_identical_science_rows_match_exactly_and_timings_are_not_compared():
    fresh = [dict(r) for r in EXPECTED]
    fresh[2]["value"] = 250.0                                   # another machine's wall time
    result = check.compare(EXPECTED, fresh, check.EXACT)
    assert result["within"] and result["compared"] == 2 and result["exact"] == 2


def test_a_moved_row_is_named_and_fails_an_exact_check_but_not_a_loose_one():
    fresh = [dict(r) for r in EXPECTED]
    fresh[1]["value"] = 0.61
    exact = check.compare(EXPECTED, fresh, check.EXACT)
    assert not exact["within"] and exact["max_abs_diff"] == pytest.approx(0.01)
    assert "dynamic s1 nDCG@10: expected 0.6000, fresh 0.6100  <- beyond tolerance" in check.check_table(exact)
    assert check.compare(EXPECTED, fresh, 0.03)["within"]


def test_a_missing_row_never_matches():
    result = check.compare(EXPECTED, EXPECTED[:1], 0.03)
    assert not result["within"] and result["missing"] == 1


def test_the_tolerance_follows_the_profile_and_precision():
    assert check.tolerance_for("toy", "float32", "float32") == check.EXACT
    assert check.tolerance_for("scifact", "bfloat16", "bfloat16") == check.SAME_PRECISION
    assert check.tolerance_for("scifact", "bfloat16", "float32") is None     # shown, not judged
    fresh = [dict(r) for r in EXPECTED]
    fresh[1]["value"] = 0.9
    assert check.compare(EXPECTED, fresh, None)["within"]


def test_the_log_keeps_every_reproduction(tmp_path):
    result = check.compare(EXPECTED, EXPECTED, check.EXACT) | {"fresh_precision": "float32"}
    for note in ("first", "second"):
        check.record(tmp_path, check.log_entry(result, machine="m", commit="abc", label=note))
    log = json.loads((tmp_path / "reproductions.json").read_text())
    assert [e["note"] for e in log] == ["first", "second"] and log[0]["within_tolerance"] is True
    assert "| m | float32 | abc | 2 | 2 | 0 | True | second |" in (tmp_path / "reproductions.md").read_text()

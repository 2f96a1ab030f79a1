"""Comparisons over seeds (rqakit.stats): intervals, tests and detectable differences against
scipy and textbook values, and the words a report may use."""
import math

import numpy as np
import pytest
from scipy import stats

from rqakit.stats import apart, bootstrap_queries, compare_seeds, detectable_difference, sentence, verdict


def test_the_detectable_difference_of_a_paired_t_test_matches_the_textbook():
    """Paired t-test, two-sided 0.05, 80 % power: n = 10 pairs detect 0.996 sd of the differences
    (Cohen's tables; G*Power gives d = 0.9962)."""
    assert detectable_difference(1 / math.sqrt(10), df=9) == pytest.approx(0.996, abs=0.002)
    # large n: the normal approximation (z_0.975 + z_0.8) * se
    assert detectable_difference(0.01, df=10_000) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-3)


def test_seeds_in_common_are_paired_and_the_interval_is_the_t_interval():
    a, b = {1: 0.70, 2: 0.69, 3: 0.71, 4: 0.70}, {1: 0.72, 2: 0.70, 3: 0.74, 4: 0.71}
    c = compare_seeds(a, b)
    d = np.array([b[s] - a[s] for s in a])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert c["test"] == "paired t over seeds"
    assert c["diff"] == pytest.approx(d.mean())
    assert c["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert c["p"] == pytest.approx(stats.ttest_rel(list(b.values()), list(a.values())).pvalue)


def test_other_seeds_fall_back_to_welch_and_one_seed_allows_no_test():
    c = compare_seeds({1: 0.70, 2: 0.69, 3: 0.71}, {4: 0.68, 5: 0.70, 6: 0.69})
    assert c["test"] == "Welch t"
    assert c["p"] == pytest.approx(stats.ttest_ind([0.68, 0.70, 0.69], [0.70, 0.69, 0.71], equal_var=False).pvalue)
    one = compare_seeds({1: 0.70}, {1: 0.75})
    assert one["p"] is None and one["ci"] is None and one["detectable"] is None
    assert verdict(one, "a", "b") == "one seed per system: no run-level test"
    assert "beats" not in sentence(one, "a", "b") and "no run-level test" in sentence(one, "a", "b")


def test_beats_only_where_the_run_level_test_is_significant():
    """A larger mean is not a win: "beats" appears only with p < 0.05 over seeds."""
    noisy = compare_seeds({1: 0.70, 2: 0.60, 3: 0.80}, {1: 0.71, 2: 0.62, 3: 0.79})
    assert noisy["diff"] > 0 and noisy["p"] > 0.05
    assert "beats" not in sentence(noisy, "static", "dynamic")
    assert "is level with" in sentence(noisy, "static", "dynamic")
    assert verdict(noisy, "static", "dynamic").startswith("no difference larger than")
    steady = compare_seeds({1: 0.70, 2: 0.60, 3: 0.80}, {1: 0.75, 2: 0.66, 3: 0.84})
    assert steady["p"] < 0.05
    assert sentence(steady, "static", "dynamic").startswith("dynamic beats static")
    assert verdict(steady, "static", "dynamic") == "dynamic better"
    worse = compare_seeds({1: 0.75, 2: 0.66, 3: 0.84}, {1: 0.70, 2: 0.60, 3: 0.80})
    assert verdict(worse, "static", "dynamic") == "static better"
    assert sentence(worse, "static", "dynamic").startswith("static beats dynamic")


def test_the_query_bootstrap_brackets_the_mean_difference():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=300)
    b = a + 0.02 + rng.normal(scale=0.05, size=300)
    lo, hi = bootstrap_queries(a, b)
    assert lo < float(np.mean(b - a)) < hi
    se = np.std(b - a, ddof=1) / math.sqrt(300)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_a_system_without_seeds_is_a_fixed_point_for_a_one_sample_test():
    c = compare_seeds({None: 0.686}, {1: 0.69, 2: 0.70, 3: 0.68})
    assert c["test"] == "one-sample t over seeds"
    assert c["p"] == pytest.approx(stats.ttest_1samp([0.69, 0.70, 0.68], 0.686).pvalue)
    assert c["ci"][0] < c["diff"] < c["ci"][1]
    assert compare_seeds({None: 0.686}, {None: 0.70})["p"] is None


def test_numbers_show_the_digits_that_tell_them_apart():
    assert apart(0.6, 0.5) == ("0.600", "0.500")
    assert apart(0.68626, 0.68630) == ("0.68626", "0.68630")    # equal to 3 and to 4 decimals
    assert apart(0.7, 0.7) == ("0.70000", "0.70000")


def test_a_difference_known_to_rounding_error_still_gets_its_detectable_difference():
    """Seeds that agree but for float noise (a saturated measure on a tiny collection): se ~ 1e-17."""
    a = {1: 0.7, 2: 0.7, 3: 0.7}
    b = {1: 0.7 + 1e-16, 2: 0.7, 3: 0.7 + 2e-16}
    c = compare_seeds(a, b)
    assert c["detectable"] is not None and 0 < c["detectable"] < 1e-14


def test_a_difference_every_seed_repeats_exactly_is_no_tie():
    """All seeds at 0.13 against BM25's 0.69: no spread, but no doubt either."""
    lower = compare_seeds({None: 0.69}, {1: 0.13, 2: 0.13, 3: 0.13})
    assert lower["p"] == 0.0 and verdict(lower, "bm25", "dynamic") == "bm25 better"
    assert compare_seeds({1: 0.5, 2: 0.5}, {1: 0.5, 2: 0.5})["p"] == 1.0

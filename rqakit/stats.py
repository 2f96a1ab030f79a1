"""Comparisons of two systems over seeds, and the words a report may use for them.

A system trained with several seeds is a set of runs; the question "is B better than A" is asked
of those runs (the run-level test), with the per-query test beside it:

    c = compare_seeds({1: 0.70, 2: 0.69, 3: 0.71}, {1: 0.68, 2: 0.70, 3: 0.69})
    c["diff"], c["ci"], c["p"], c["detectable"]     # B - A, its 95 % interval, p, 80 %-power MDE
    verdict(c, "static", "dynamic")                 # "no difference larger than 0.031"

Runs of the same seed share the data order and initial random state, so where both systems have
the same seeds the runs are paired by seed (paired t-test over the per-seed differences);
against a system without seeds, a one-sample t-test; otherwise Welch's t-test. A single run per
system allows no run-level test at all: the result says so (`p` None), and so does the wording.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, stats

ALPHA = 0.05
POWER = 0.8


def _t_power(delta: float, se: float, df: float, alpha: float) -> float:
    """Power of a two-sided t-test with `df` degrees of freedom to detect a true difference
    `delta` whose estimate has standard error `se` (noncentral t)."""
    crit, nc = stats.t.ppf(1 - alpha / 2, df), delta / se

    def given_v(v: float) -> float:  # T = (Z + nc) / sqrt(V / df), V ~ chi2(df)
        c = crit * math.sqrt(v / df)
        return (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc)) * stats.chi2.pdf(v, df)

    lo, hi = stats.chi2.ppf(1e-12, df), stats.chi2.isf(1e-12, df)   # where V's mass lies
    return float(integrate.quad(given_v, lo, hi, limit=200)[0])


def detectable_difference(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true difference a two-sided t-test at `alpha` detects with probability `power`,
    given the standard error `se` of the estimated difference and its degrees of freedom."""
    if not (se > 0 and df >= 1):
        return None
    hi = se * (stats.t.ppf(1 - alpha / 2, df) + 10)   # power is ~1 there, and ~alpha at hi * 1e-9
    return float(optimize.brentq(lambda d: _t_power(d, se, df, alpha) - power, hi * 1e-9, hi))


def _no_spread(diff: float) -> float:
    """p where every seed gives the same difference: 0 when it is not zero (it holds in every run),
    1 when it is."""
    return 1.0 if diff == 0 else 0.0


def compare_seeds(a: dict, b: dict, alpha: float = ALPHA) -> dict:
    """B - A over runs: `a`, `b` map seed -> the run's score (one number per run); `{None: x}`
    is a system without seeds (BM25), against which B's runs take a one-sample t-test.

    Returns n_a, n_b, mean_a, mean_b, sd_a, sd_b, diff, ci (95 % interval of diff or None),
    p (run-level test or None), test ("paired t over seeds" | "Welch t" | None) and detectable
    (the smallest difference that test detects at 80 % power, or None).
    """
    va, vb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    out = {"n_a": len(va), "n_b": len(vb), "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
           "sd_a": float(va.std(ddof=1)) if len(va) > 1 else None,
           "sd_b": float(vb.std(ddof=1)) if len(vb) > 1 else None,
           "diff": float(vb.mean() - va.mean()), "ci": None, "p": None, "test": None, "detectable": None}
    shared = sorted(set(a) & set(b))
    fixed = [None] == list(a) and len(vb) >= 2   # A has no seeds (BM25, a frozen model): B's runs against it
    if fixed:
        se, df = vb.std(ddof=1) / math.sqrt(len(vb)), len(vb) - 1
        out["test"] = "one-sample t over seeds"
        out["p"] = float(stats.ttest_1samp(vb, va[0]).pvalue) if se > 0 else _no_spread(out["diff"])
    elif len(shared) == len(a) == len(b) and len(shared) >= 2:
        d = np.array([b[s] - a[s] for s in shared], float)
        se, df = d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
        out["test"] = "paired t over seeds"
        out["p"] = float(stats.ttest_1samp(d, 0.0).pvalue) if se > 0 else _no_spread(out["diff"])
    elif len(va) >= 2 and len(vb) >= 2:
        var_a, var_b = va.var(ddof=1) / len(va), vb.var(ddof=1) / len(vb)
        se = math.sqrt(var_a + var_b)
        df = ((var_a + var_b) ** 2 / (var_a ** 2 / (len(va) - 1) + var_b ** 2 / (len(vb) - 1))
              if se > 0 else len(va) + len(vb) - 2)
        out["test"] = "Welch t"
        out["p"] = float(stats.ttest_ind(vb, va, equal_var=False).pvalue) if se > 0 else _no_spread(out["diff"])
    else:
        return out
    half = stats.t.ppf(1 - alpha / 2, df) * se
    out["ci"] = [float(out["diff"] - half), float(out["diff"] + half)]
    out["detectable"] = detectable_difference(se, df, alpha)
    return out


def bootstrap_queries(a, b, n_boot: int = 2000, seed: int = 0, alpha: float = ALPHA) -> list[float]:
    """95 % percentile interval of mean(b - a) over queries resampled with replacement.

    `a`, `b`: per-query values (n_queries,) in the same order (each averaged over its seeds).
    It holds the test queries' sampling noise only, not the runs' variance."""
    d = np.asarray(b, float) - np.asarray(a, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


def significant(c: dict, alpha: float = ALPHA) -> bool:
    return c.get("p") is not None and c["p"] < alpha


def verdict(c: dict, name_a: str, name_b: str, alpha: float = ALPHA) -> str:
    """Words chosen by the numbers: "<b> better", "<a> better", "no difference larger than X"
    (X: the far end of the 95 % interval), or "one seed: no test" without a run-level test."""
    if c.get("p") is None:
        return "one seed per system: no run-level test"
    if significant(c, alpha):
        return f"{name_b} better" if c["diff"] > 0 else f"{name_a} better"
    return f"no difference larger than {max(abs(c['ci'][0]), abs(c['ci'][1])):.3f}"


def apart(a: float, b: float) -> tuple[str, str]:
    """a and b with three decimals, or as many more (up to five) as it takes to tell them apart."""
    for digits in (3, 4, 5):
        fa, fb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if fa != fb:
            break
    return fa, fb


def sentence(c: dict, name_a: str, name_b: str, digits: int = 3, alpha: float = ALPHA) -> str:
    """One sentence comparing B with A, means first: "beats" only when the run-level test is
    significant, "is level with" otherwise, and a comparison of single runs says it has no test."""
    f = f"{{:+.{digits}f}}"
    mb, ma = apart(c["mean_b"], c["mean_a"])
    b_first = f"{mb} ({_runs(c['n_b'])}) vs {ma} ({_runs(c['n_a'])})"
    if c.get("p") is None:
        return f"{name_b} vs {name_a}: {b_first}, {f.format(c['diff'])} with no run-level test (one run each)."
    interval = f"difference {f.format(c['diff'])}, 95 % CI [{f.format(c['ci'][0])}, {f.format(c['ci'][1])}]"
    tail = f"{c['test']}, p = {c['p']:.3g}"
    if c["test"].startswith("one-sample"):
        tail += f", {name_a}: one run, taken as fixed"
    if significant(c, alpha):
        if c["diff"] > 0:
            return f"{name_b} beats {name_a}: {b_first} ({interval}; {tail})."
        return f"{name_a} beats {name_b}: {ma} ({_runs(c['n_a'])}) vs {mb} ({_runs(c['n_b'])}) ({interval}; {tail})."
    return f"{name_b} is level with {name_a}: {b_first} ({interval}; {tail})."


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"mean of {n} seeds"

"""The check functions a claim names, and the points they read: every check, whichever
module defines it (`trend_checks`, `comparison_checks`, `threshold_checks`), is named here.

A study file declares each claim as data: `Claim(id, text, check, params, controls)`, where
`check` names one of the checks listed below and `params` holds its thresholds, fixed before
any run. A check reads summary rows (one per trial: the swept hyperparameters under their
own names, `status`, the final validation metrics without the `valid/` prefix, and
`history`, the trial's validation reports by step) and answers

    {"verdict": "PASS" | "FAIL" | "INCONCLUSIVE", "measured": {...}, "threshold": "...",
     "note": "..."}

Rules shared by every check:
* rows with the same hyperparameters are averaged into one point (`studies.results.claims` calls
  the checks once per seed, so a point is one trial there);
* only trials whose status is `completed` or `collapsed` count (a collapsed trial was stopped
  early, and its last metrics are valid data); a point whose trials all failed, or that has
  no trial at all, is missing;
* a claim that needs a missing point, or a value that is not a number, is INCONCLUSIVE and
  its note says which;
* `at_step=N` reads every value from the report at step N instead of the final one;
* derived measures: `kl_share` = kl_bpc / total_bpc, `mi` = the final MI over the large
  pool where the trial has it (`mi_pool`), else over the report's fragments.
"""

from __future__ import annotations

from .comparison_checks import (
    at_least_median,
    below_by,
    compare_at,
    difference_vs,
    max_vs,
    mean_greater,
    ratio_between,
    ratio_vs,
    times_baseline,
    within_of_best,
)
from .points import DERIVED, MEASURES, USABLE, VERDICTS, average, clean, ranks, spearman
from .threshold_checks import (
    all_above,
    all_at_least,
    all_below,
    not_collapsed,
    on_corpus,
    value_at,
    value_between,
)
from .trend_checks import (
    MIN_SPEARMAN_POINTS,
    first_reaching,
    greater_at_every,
    increasing,
    spearman_by_group,
)

__all__ = [
    "VERDICTS",
    "USABLE",
    "MEASURES",
    "DERIVED",
    "average",
    "ranks",
    "spearman",
    "clean",
    "MIN_SPEARMAN_POINTS",
    # the checks
    "spearman_by_group",
    "first_reaching",
    "greater_at_every",
    "increasing",
    "compare_at",
    "ratio_between",
    "ratio_vs",
    "difference_vs",
    "below_by",
    "mean_greater",
    "max_vs",
    "within_of_best",
    "times_baseline",
    "value_between",
    "on_corpus",
    "at_least_median",
    "value_at",
    "all_below",
    "all_above",
    "all_at_least",
    "not_collapsed",
]

"""Check functions on synthetic summary rows: each gives PASS, FAIL and INCONCLUSIVE (a missing
point, a failed trial) where expected; rank correlation and seed averaging by hand."""

import dataclasses
import math

import pytest

from studies.results import checks, claims
from studies.results.points import hyperparameters
from studies.errors import StudyError
from studies.loading import load_study
from studies.spec import Claim


def row(status="completed", kl=0.1, total=2.0, rec=None, **params):
    return {
        **params,
        "status": status,
        "kl_bpc": kl,
        "total_bpc": total,
        "rec_bpc": total - kl if rec is None else rec,
        "aux_bpc": math.nan,
    }


def verdict(result):
    assert set(result) >= {"verdict", "measured", "threshold", "note"}
    assert result["verdict"] in checks.VERDICTS
    return result["verdict"]


# --- rank correlation and averaging ---------------------------------------------------------


def test_ranks_average_ties():
    assert checks.ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]


def test_spearman_by_hand():
    assert checks.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert checks.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x 1..4, y 1,3,2,4: d^2 = 0+1+1+0 = 2, rho = 1 - 6*2/(4*15) = 0.8
    assert checks.spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)
    # with ties: Pearson of average ranks
    assert checks.spearman([1, 2, 3], [5, 5, 6]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(checks.spearman([1, 2, 3], [7, 7, 7]))


def test_a_summary_column_that_is_no_hyperparameter_never_splits_a_points_seeds():
    """Seeds group by the variant and the config fields alone: a column the summary gains
    later (here one that differs per seed) is not taken for a hyperparameter."""
    rows = [
        {**row(variant="lstm", length=36, seed=s, kl=0.1 * (s + 1)), "new_timing_s": 10.0 + s}
        for s in range(3)
    ]
    rows += [row(variant="hybrid", length=36, seed=0, kl=0.5)]
    points = {p["variant"]: p for p in checks.average(rows)}
    assert points["lstm"]["seeds"] == 3 and points["lstm"]["kl_bpc"] == pytest.approx(0.2)
    assert set(hyperparameters(rows[0])) == {"variant", "length"}


def test_seeds_are_averaged_and_only_usable_trials_count():
    rows = [
        row(alpha=0.2, seed=0, kl=0.1),
        row(alpha=0.2, seed=1, kl=0.3),
        row("failed", alpha=0.2, seed=2, kl=9.0),
        row("collapsed", alpha=0.5, seed=0, kl=0.01),
        row("failed", alpha=0.8, kl=0.5),
    ]
    points = {p["alpha"]: p for p in checks.average(rows)}
    assert points[0.2]["kl_bpc"] == pytest.approx(0.2) and points[0.2]["seeds"] == 2
    assert points[0.5]["status"] == "ok"  # a collapsed trial's last metrics are data
    assert points[0.8]["status"] == "failed" and math.isnan(points[0.8]["kl_bpc"])


# --- each check: PASS, FAIL, INCONCLUSIVE -----------------------------------------------------

SPEARMAN = dict(x="alpha", y="kl_bpc", group="anneal", threshold=0.8)


def sweep(kls_on, kls_off, alphas=(0.2, 0.5, 0.8), status=None):
    rows = [row(alpha=a, anneal=True, kl=k) for a, k in zip(alphas, kls_on)]
    rows += [row(alpha=a, anneal=False, kl=k) for a, k in zip(alphas, kls_off)]
    for i, s in (status or {}).items():
        rows[i]["status"] = s
    return rows


def test_spearman_by_group():
    assert (
        verdict(checks.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.0, 0.1, 0.2)), **SPEARMAN))
        == "PASS"
    )
    fail = checks.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.3, 0.1, 0.2)), **SPEARMAN)
    assert verdict(fail) == "FAIL"
    assert fail["measured"]["spearman(alpha, kl_bpc) at anneal=False"] == pytest.approx(-0.5)
    flat = checks.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.0, 0.0, 0.0)), **SPEARMAN)
    assert verdict(flat) == "FAIL" and "constant" in flat["note"]
    failed = checks.spearman_by_group(
        sweep((0.1, 0.2, 0.3), (0.0, 0.1, 0.2), status={4: "failed"}), **SPEARMAN
    )
    assert (
        verdict(failed) == "INCONCLUSIVE"
        and "alpha=0.5" in failed["note"]
        and "failed" in failed["note"]
    )
    two = checks.spearman_by_group(sweep((0.1, 0.2), (0.0, 0.1), alphas=(0.2, 0.8)), **SPEARMAN)
    assert verdict(two) == "INCONCLUSIVE" and "needs >= 3 values of alpha" in two["note"]
    assert verdict(checks.spearman_by_group([], **SPEARMAN)) == "INCONCLUSIVE"


COMPARE = dict(at={"alpha": 0.2}, y="kl_bpc", group="anneal", greater=True, lesser=False)


def test_compare_at():
    assert (
        verdict(
            checks.compare_at(
                [row(alpha=0.2, anneal=True, kl=0.3), row(alpha=0.2, anneal=False, kl=0.3)],
                **COMPARE,
            )
        )
        == "PASS"
    )  # >= : equal passes
    assert (
        verdict(
            checks.compare_at(
                [row(alpha=0.2, anneal=True, kl=0.1), row(alpha=0.2, anneal=False, kl=0.3)],
                **COMPARE,
            )
        )
        == "FAIL"
    )
    missing = checks.compare_at(
        [row(alpha=0.2, anneal=True), row(alpha=0.5, anneal=False)], **COMPARE
    )
    assert (
        verdict(missing) == "INCONCLUSIVE"
        and "no trial with alpha=0.2, anneal=False" in missing["note"]
    )
    failed = checks.compare_at(
        [row(alpha=0.2, anneal=True), row("failed", alpha=0.2, anneal=False)], **COMPARE
    )
    assert verdict(failed) == "INCONCLUSIVE" and "anneal=False: failed" in failed["note"]


def frag(variant, share12, share60, status60="completed"):
    return [
        row(variant=variant, length=12, kl=share12 * 2.0, total=2.0),
        row(status60, variant=variant, length=60, kl=share60 * 2.0, total=2.0),
    ]


def test_ratio_between_below_and_at_least():
    below = dict(
        where={"variant": "lstm p=0.2"}, x="length", lo=12, hi=60, y="kl_share", below=0.25
    )
    at_least = dict(
        where={"variant": "hybrid a=0.2"}, x="length", lo=12, hi=60, y="kl_share", at_least=0.5
    )
    rows = frag("lstm p=0.2", 0.2, 0.01) + frag("hybrid a=0.2", 0.2, 0.15)
    passed = checks.ratio_between(rows, **below)
    assert verdict(passed) == "PASS" and passed["measured"][
        "ratio length=60 / length=12"
    ] == pytest.approx(0.05)
    assert verdict(checks.ratio_between(rows, **at_least)) == "PASS"
    rows = frag("lstm p=0.2", 0.2, 0.1) + frag("hybrid a=0.2", 0.2, 0.05)
    assert verdict(checks.ratio_between(rows, **below)) == "FAIL"
    assert verdict(checks.ratio_between(rows, **at_least)) == "FAIL"
    rows = frag("lstm p=0.2", 0.2, 0.01)[:1] + frag("hybrid a=0.2", 0.2, 0.15, status60="failed")
    assert verdict(checks.ratio_between(rows, **below)) == "INCONCLUSIVE"
    assert verdict(checks.ratio_between(rows, **at_least)) == "INCONCLUSIVE"
    with pytest.raises(StudyError, match="exactly one of below, at_least"):
        checks.ratio_between(rows, where={}, x="length", lo=12, hi=60, y="kl_share")


RATIO_VS = dict(
    x="length",
    at=(30, 50),
    y="rec_bpc",
    numerator={"variant": "lstm p=1"},
    denominator={"variant": "conv"},
    at_least=2.0,
)


def historyless(lstm30, lstm50, conv=0.5, status=None):
    rows = [
        row(variant="lstm p=1", length=30, rec=lstm30),
        row(variant="lstm p=1", length=50, rec=lstm50),
        row(variant="conv", length=30, rec=conv),
        row(variant="conv", length=50, rec=conv),
    ]
    for i, s in (status or {}).items():
        rows[i]["status"] = s
    return rows


def test_ratio_vs():
    assert verdict(checks.ratio_vs(historyless(1.0, 2.0), **RATIO_VS)) == "PASS"
    fail = checks.ratio_vs(historyless(1.5, 0.9), **RATIO_VS)  # 3x at 30 but 1.8x at 50
    assert verdict(fail) == "FAIL" and fail["measured"][
        "rec_bpc ratio at length=50"
    ] == pytest.approx(1.8)
    assert verdict(checks.ratio_vs(historyless(1.0, 2.0)[:3], **RATIO_VS)) == "INCONCLUSIVE"
    assert (
        verdict(checks.ratio_vs(historyless(1.0, 2.0, status={3: "failed"}), **RATIO_VS))
        == "INCONCLUSIVE"
    )


def test_value_at():
    params = dict(where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0)
    assert verdict(checks.value_at(historyless(1, 2, conv=1.0), **params)) == "PASS"
    assert verdict(checks.value_at(historyless(1, 2, conv=1.2), **params)) == "FAIL"
    assert verdict(checks.value_at(historyless(1, 2)[:3], **params)) == "INCONCLUSIVE"
    assert (
        verdict(checks.value_at(historyless(1, 2, status={3: "failed"}), **params))
        == "INCONCLUSIVE"
    )
    nan = historyless(1, 2)
    nan[3]["rec_bpc"] = math.nan
    result = checks.value_at(nan, **params)
    assert verdict(result) == "INCONCLUSIVE" and "not a number" in result["note"]
    assert (
        verdict(
            checks.value_at(
                historyless(1, 2, conv=1.2), where=params["where"], y="rec_bpc", at_least=1.0
            )
        )
        == "PASS"
    )


def bytenet(kl, status=None):
    """kl: {(alpha, depth): kl_bpc}"""
    return [
        row((status or {}).get(k, "completed"), alpha=k[0], depth=k[1], kl=v) for k, v in kl.items()
    ]


BELOW = dict(where={"alpha": 0.0}, x="depth", x_min=3, y="kl_bpc", threshold=0.02)
ABOVE = dict(where={"alpha": (0.2, 0.5)}, y="kl_bpc", threshold=0.05)
MEAN = dict(group="alpha", y="kl_bpc", greater=0.5, lesser=0.2)


def test_all_below():
    grid = {(0.0, 1): 0.3, (0.0, 3): 0.01, (0.0, 5): 0.0}
    assert verdict(checks.all_below(bytenet(grid), **BELOW)) == "PASS"  # depth 1 is not in scope
    assert (
        verdict(checks.all_below(bytenet({**grid, (0.0, 5): 0.02}), **BELOW)) == "FAIL"
    )  # strict <
    assert verdict(checks.all_below(bytenet({**grid, (0.0, 3): 0.05}), **BELOW)) == "FAIL"
    # a failed trial outside the scope does not matter; one inside does
    assert verdict(checks.all_below(bytenet(grid, status={(0.0, 1): "failed"}), **BELOW)) == "PASS"
    assert (
        verdict(checks.all_below(bytenet(grid, status={(0.0, 3): "failed"}), **BELOW))
        == "INCONCLUSIVE"
    )
    none = checks.all_below(bytenet({(0.0, 1): 0.3}), **BELOW)
    assert verdict(none) == "INCONCLUSIVE" and "depth >= 3" in none["note"]


def test_all_above():
    grid = {(0.2, 1): 0.1, (0.2, 4): 0.06, (0.5, 1): 0.2, (0.5, 4): 0.3, (0.0, 4): 0.0}
    assert verdict(checks.all_above(bytenet(grid), **ABOVE)) == "PASS"  # alpha=0 is not in scope
    assert verdict(checks.all_above(bytenet({**grid, (0.2, 4): 0.04}), **ABOVE)) == "FAIL"
    # every depth counts, not only the last one listed per alpha, and each is reported
    low_first = checks.all_above(bytenet({**grid, (0.2, 1): 0.04}), **ABOVE)
    assert verdict(low_first) == "FAIL"
    assert low_first["measured"]["alpha=0.2, depth=1"] == 0.04 and len(low_first["measured"]) == 4
    missing = checks.all_above(bytenet({k: v for k, v in grid.items() if k[0] != 0.2}), **ABOVE)
    assert verdict(missing) == "INCONCLUSIVE" and "no trial with alpha=0.2" in missing["note"]
    failed = checks.all_above(bytenet(grid, status={(0.5, 4): "failed"}), **ABOVE)
    assert verdict(failed) == "INCONCLUSIVE" and "alpha=0.5, depth=4: failed" in failed["note"]


def test_mean_greater():
    grid = {(0.2, 1): 0.1, (0.2, 4): 0.2, (0.5, 1): 0.1, (0.5, 4): 0.3}
    result = checks.mean_greater(bytenet(grid), **MEAN)
    assert verdict(result) == "PASS" and result["measured"][
        "mean kl_bpc at alpha=0.5"
    ] == pytest.approx(0.2)
    assert (
        verdict(checks.mean_greater(bytenet({**grid, (0.5, 4): 0.2}), **MEAN)) == "FAIL"
    )  # strict >
    assert (
        verdict(checks.mean_greater(bytenet({(0.5, 1): 0.1, (0.5, 4): 0.3}), **MEAN))
        == "INCONCLUSIVE"
    )
    assert (
        verdict(checks.mean_greater(bytenet(grid, status={(0.2, 1): "failed"}), **MEAN))
        == "INCONCLUSIVE"
    )


MAX_VS = dict(
    y="kl_bpc",
    subject={"variant": "hybrid a=0.2"},
    others={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")},
)


def dropout(hybrid, lstm=(0.01, 0.05, 0.1), status=None):
    rows = [row(variant=f"lstm p={p}", kl=k) for p, k in zip((0.2, 0.5, 0.8), lstm)]
    rows.append(row(variant="hybrid a=0.2", kl=hybrid))
    for i, s in (status or {}).items():
        rows[i]["status"] = s
    return rows


def test_max_vs():
    result = checks.max_vs(dropout(0.3), **MAX_VS)
    assert verdict(result) == "PASS" and len(result["measured"]) == 4
    assert verdict(checks.max_vs(dropout(0.08), **MAX_VS)) == "FAIL"
    assert verdict(checks.max_vs(dropout(0.3)[1:], **MAX_VS)) == "INCONCLUSIVE"
    assert verdict(checks.max_vs(dropout(0.3, status={3: "failed"}), **MAX_VS)) == "INCONCLUSIVE"
    # several rival points per listed value: each is kept and the largest counts, wherever it sits
    rows = [
        row(variant="lstm p=0.2", length=12, kl=0.5),
        row(variant="lstm p=0.2", length=60, kl=0.01),
        row(variant="hybrid a=0.2", kl=0.3),
    ]
    result = checks.max_vs(
        rows, y="kl_bpc", subject={"variant": "hybrid a=0.2"}, others={"variant": "lstm p=0.2"}
    )
    assert verdict(result) == "FAIL" and len(result["measured"]) == 3


def test_several_seeds_of_a_point_are_judged_per_seed_not_averaged():
    """A check given two seeds' rows sees one point (not two ambiguous ones), but a claim
    never passes it more than one seed: 0.8 and 1.1 must not average into a PASS."""
    rows = [
        row(variant="conv", length=50, rec=0.8, seed=0),
        row(variant="conv", length=50, rec=1.1, seed=1),
    ]
    result = checks.value_at(
        rows, where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0
    )
    assert verdict(result) == "PASS" and result["measured"][
        "rec_bpc at variant=conv, length=50"
    ] == pytest.approx(0.95)
    study = dataclasses.replace(
        load_study("historyless"),
        claims=(
            Claim(
                "c",
                "conv rec_bpc at L=50 <= 1.0",
                checks.value_at,
                dict(where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0),
            ),
        ),
    )
    (judged,) = claims.evaluate(study, rows)
    assert [s["verdict"] for s in judged["seeds"]] == ["PASS", "FAIL"] and judged[
        "verdict"
    ] == "UNSTABLE"
    assert judged["measured"]["rec_bpc at variant=conv, length=50"] == pytest.approx(0.95)


# --- the checks of the trust issue: history, controls, onsets, every-x comparisons -----------


def with_history(r, **by_step):
    """A row whose validation reports are given as step -> {measure: value}."""
    r["history"] = {int(k.removeprefix("s")): v for k, v in by_step.items()}
    return r


def fig3(
    conv_at_1000=(0.5, 0.6, 0.7, 0.9),
    lstm_at_1000=(2.0, 2.2, 2.4, 2.6),
    lstm_end=(3.0, 3.3, 3.5, 3.6),
):
    rows = []
    for L, c, lstm, e in zip((10, 20, 30, 50), conv_at_1000, lstm_at_1000, lstm_end):
        rows.append(with_history(row(variant="conv", length=L, rec=c / 2), s1000={"rec_bpc": c}))
        rows.append(
            with_history(
                row(variant="lstm p=1", length=L, rec=e, unigram_bpc=4.3), s1000={"rec_bpc": lstm}
            )
        )
    return rows


def test_all_below_at_a_step_of_the_history_inclusive():
    params = dict(
        where={"variant": "conv"}, y="rec_bpc", threshold=1.0, inclusive=True, at_step=1000
    )
    result = checks.all_below(fig3(), **params)
    assert verdict(result) == "PASS" and max(result["measured"].values()) == pytest.approx(0.9)
    assert (
        verdict(checks.all_below(fig3(conv_at_1000=(0.5, 0.6, 0.7, 1.0)), **params)) == "PASS"
    )  # <= 1.0
    assert verdict(checks.all_below(fig3(conv_at_1000=(0.5, 0.6, 1.2, 0.9)), **params)) == "FAIL"
    # the final values would pass; the value at step 1000 is what counts
    assert (
        verdict(
            checks.all_below(fig3(conv_at_1000=(0.5, 0.6, 1.2, 0.9)), **{**params, "at_step": None})
        )
        == "PASS"
    )
    no_report = checks.all_below(fig3(), **{**params, "at_step": 2000})
    assert verdict(no_report) == "INCONCLUSIVE" and "no report at step 2000" in no_report["note"]


def test_difference_vs():
    params = dict(
        x="length",
        at=(30, 50),
        y="rec_bpc",
        subject={"variant": "lstm p=1"},
        baseline={"variant": "conv"},
        at_least=1.0,
        at_step=1000,
    )
    result = checks.difference_vs(fig3(), **params)
    assert verdict(result) == "PASS" and result["measured"][
        "rec_bpc difference at length=30"
    ] == pytest.approx(1.7)
    assert (
        verdict(checks.difference_vs(fig3(lstm_at_1000=(2.0, 2.2, 2.4, 1.8)), **params)) == "FAIL"
    )
    assert (
        verdict(checks.difference_vs(fig3()[:-1], **params)) == "INCONCLUSIVE"
    )  # lstm L=50 missing


def test_below_by():
    params = dict(
        where={"variant": "lstm p=1", "length": 10}, y="rec_bpc", ref="unigram_bpc", margin=1.0
    )
    result = checks.below_by(fig3(), **params)
    assert verdict(result) == "PASS" and result["measured"]["unigram_bpc"] == pytest.approx(4.3)
    assert (
        verdict(checks.below_by(fig3(lstm_end=(3.5, 3.5, 3.5, 3.6)), **params)) == "FAIL"
    )  # 0.8 bit below
    assert verdict(checks.below_by(fig3()[2:], **params)) == "INCONCLUSIVE"


def alive(units=2.0, mi=0.4, pool=None, **params):
    r = row(**params)
    r.update(active_units=units, mutual_info=mi, mi_pool=math.nan if pool is None else pool)
    return r


def test_not_collapsed_every_and_any():
    where = {"variant": "lstm p=0.2", "length": 12}
    assert (
        verdict(checks.not_collapsed([alive(variant="lstm p=0.2", length=12)], where=where))
        == "PASS"
    )
    assert (
        verdict(checks.not_collapsed([alive(0, 0.4, variant="lstm p=0.2", length=12)], where=where))
        == "FAIL"
    )
    assert (
        verdict(
            checks.not_collapsed([alive(3, 0.05, variant="lstm p=0.2", length=12)], where=where)
        )
        == "FAIL"
    )
    # the pool MI, where a trial has it, decides over the per-report one
    assert (
        verdict(
            checks.not_collapsed(
                [alive(3, 0.05, pool=0.2, variant="lstm p=0.2", length=12)], where=where
            )
        )
        == "PASS"
    )
    assert (
        verdict(checks.not_collapsed([alive(variant="lstm p=0.5", length=12)], where=where))
        == "INCONCLUSIVE"
    )
    lstms = {"variant": ("lstm p=0.2", "lstm p=0.5")}
    rows = [alive(0, 0.0, variant="lstm p=0.2"), alive(2, 0.3, variant="lstm p=0.5")]
    assert verdict(checks.not_collapsed(rows, where=lstms, require="any")) == "PASS"
    assert verdict(checks.not_collapsed(rows, where=lstms)) == "FAIL"
    assert verdict(checks.not_collapsed(rows[:1], where=lstms, require="any")) == "INCONCLUSIVE"
    with pytest.raises(StudyError, match="require"):
        checks.not_collapsed(rows, where=lstms, require="some")


ONSET = dict(x="alpha", y="kl_bpc", threshold=0.05, group="anneal", earlier=True, later=False)


def test_first_reaching():
    alphas = (0.1, 0.2, 0.3)
    result = checks.first_reaching(
        sweep((0.01, 0.1, 0.2), (0.0, 0.01, 0.2), alphas=alphas), **ONSET
    )
    assert verdict(result) == "PASS"
    assert result["measured"]["smallest alpha with kl_bpc >= 0.05, anneal=True"] == 0.2
    # annealing reaches the threshold and no annealing never does: holds
    assert (
        verdict(
            checks.first_reaching(sweep((0.01, 0.1, 0.2), (0.0, 0.0, 0.01), alphas=alphas), **ONSET)
        )
        == "PASS"
    )
    # a tie fails, and so does a later onset with annealing
    assert (
        verdict(
            checks.first_reaching(sweep((0.01, 0.1, 0.2), (0.0, 0.1, 0.2), alphas=alphas), **ONSET)
        )
        == "FAIL"
    )
    assert (
        verdict(
            checks.first_reaching(sweep((0.0, 0.0, 0.2), (0.0, 0.1, 0.2), alphas=alphas), **ONSET)
        )
        == "FAIL"
    )
    neither = checks.first_reaching(
        sweep((0.0, 0.0, 0.01), (0.0, 0.0, 0.01), alphas=alphas), **ONSET
    )
    assert verdict(neither) == "INCONCLUSIVE" and "cannot test" in neither["note"]
    assert (
        verdict(
            checks.first_reaching(
                sweep((0.01, 0.1, 0.2), (0.0, 0.01, 0.2), alphas=alphas, status={4: "failed"}),
                **ONSET,
            )
        )
        == "INCONCLUSIVE"
    )


GREATER = dict(x="depth", y="kl_bpc", group="alpha", greater=0.5, lesser=0.2)


def test_greater_at_every():
    grid = {(0.2, 1): 0.1, (0.2, 4): 0.2, (0.5, 1): 0.2, (0.5, 4): 0.3}
    assert verdict(checks.greater_at_every(bytenet(grid), **GREATER)) == "PASS"
    # the means would still favour alpha=0.5; depth 4 alone does not
    assert (
        verdict(
            checks.greater_at_every(bytenet({**grid, (0.5, 1): 0.5, (0.5, 4): 0.19}), **GREATER)
        )
        == "FAIL"
    )
    missing = {k: v for k, v in grid.items() if k != (0.2, 4)}
    assert verdict(checks.greater_at_every(bytenet(missing), **GREATER)) == "INCONCLUSIVE"


INCREASING = dict(
    where={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")},
    x="dropout",
    ys=("kl_bpc", "rec_bpc"),
)


def table2(kls=(0.01, 0.05, 0.1), recs=(1.5, 1.7, 2.0), hybrid_kl=0.3, hybrid_total=1.6):
    rows = [
        row(variant=f"lstm p={p}", model="lstm", dropout=p, kl=k, rec=r, total=k + r)
        for p, k, r in zip((0.2, 0.5, 0.8), kls, recs)
    ]
    rows.append(
        row(
            variant="hybrid a=0.2",
            model="hybrid-lstm",
            dropout=0.0,
            kl=hybrid_kl,
            total=hybrid_total,
        )
    )
    return rows


def test_increasing():
    assert verdict(checks.increasing(table2(), **INCREASING)) == "PASS"
    assert (
        verdict(checks.increasing(table2(recs=(1.5, 1.4, 2.0)), **INCREASING)) == "FAIL"
    )  # rec dips at p=0.5
    assert (
        verdict(checks.increasing(table2(kls=(0.01, 0.05, 0.05)), **INCREASING)) == "FAIL"
    )  # strict
    assert verdict(checks.increasing(table2()[1:], **INCREASING)) == "INCONCLUSIVE"


WITHIN = dict(
    y="total_bpc",
    subject={"variant": "hybrid a=0.2"},
    others={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")},
    rel=0.1,
)


def test_within_of_best():
    result = checks.within_of_best(table2(hybrid_total=1.6), **WITHIN)  # best lstm total 1.51
    assert verdict(result) == "PASS" and result["measured"]["relative difference"] == pytest.approx(
        0.09 / 1.51
    )
    assert verdict(checks.within_of_best(table2(hybrid_total=1.7), **WITHIN)) == "FAIL"
    assert (
        verdict(checks.within_of_best(table2(hybrid_total=1.2), **WITHIN)) == "FAIL"
    )  # not comparable either
    assert verdict(checks.within_of_best(table2()[:3], **WITHIN)) == "INCONCLUSIVE"


def test_ratio_between_every_high_value_and_spearman_within_a_subset():
    rows = [
        row(variant="lstm", length=L, kl=k, total=2.0)
        for L, k in ((12, 0.4), (36, 0.2), (48, 0.05), (60, 0.02))
    ]
    params = dict(
        where={"variant": "lstm"}, x="length", lo=12, hi_from=48, y="kl_share", below=0.25
    )
    result = checks.ratio_between(rows, **params)
    assert verdict(result) == "PASS" and "ratio length=48 / length=12" in result["measured"]
    rows[2]["kl_bpc"] = 0.15  # L=48 keeps 37% of the share
    assert verdict(checks.ratio_between(rows, **params)) == "FAIL"
    assert verdict(checks.ratio_between(rows[:2], **params)) == "INCONCLUSIVE"
    with pytest.raises(StudyError, match="exactly one of hi, hi_from"):
        checks.ratio_between(rows, **{**params, "hi": 60})
    on = dict(x="alpha", y="total_bpc", group="anneal", threshold=0.5, where={"anneal": True})
    good = sweep((0.1, 0.2, 0.3), (0.3, 0.2, 0.1))
    for r, t in zip(good, (1.0, 1.1, 1.2, 9.0, 1.0, 0.5)):
        r["total_bpc"] = t
    result = checks.spearman_by_group(good, **on)
    assert verdict(result) == "PASS" and list(result["measured"]) == [
        "spearman(alpha, total_bpc) at anneal=True"
    ]
    good[0]["total_bpc"] = 2.0
    assert verdict(checks.spearman_by_group(good, **on)) == "FAIL"


def test_all_below_with_a_depth_ceiling():
    grid = {(0.0, 1): 0.1, (0.0, 2): 0.06, (0.0, 4): 0.001}
    params = dict(where={"alpha": 0.0}, x="depth", x_max=2, y="kl_bpc", threshold=0.05)
    assert verdict(checks.all_above(bytenet(grid), **params)) == "PASS"
    assert verdict(checks.all_above(bytenet({**grid, (0.0, 2): 0.01}), **params)) == "FAIL"


# --- the remedies study's checks ------------------------------------------------------------


def remedy(variant, z_gain, mi, iw=2.0, status="completed"):
    r = row(status=status, variant=variant)
    r.update(z_gain_bpc=z_gain, mutual_info=mi, mi_pool=math.nan, iw_nll_bpc=iw)
    return r


def test_all_at_least_needs_every_measure_at_every_point():
    where = {"variant": ("lstm+a", "lstm+b")}
    mins = {"z_gain_bpc": 0.05, "mi": 0.1}
    good = [remedy("lstm+a", 0.2, 0.5), remedy("lstm+b", 0.06, 0.2)]
    assert verdict(checks.all_at_least(good, where=where, mins=mins)) == "PASS"
    assert (
        verdict(checks.all_at_least([good[0], remedy("lstm+b", 0.04, 0.9)], where=where, mins=mins))
        == "FAIL"
    )
    assert (
        verdict(checks.all_at_least([good[0], remedy("lstm+b", 0.2, 0.05)], where=where, mins=mins))
        == "FAIL"
    )
    assert (
        verdict(checks.all_at_least(good[:1], where=where, mins=mins)) == "INCONCLUSIVE"
    )  # lstm+b missing
    failed = [good[0], remedy("lstm+b", 0.2, 0.5, status="failed")]
    assert verdict(checks.all_at_least(failed, where=where, mins=mins)) == "INCONCLUSIVE"


def test_times_baseline_and_median():
    rows = [
        remedy("lstm", 0.0, 0.05),
        remedy("lstm+agg", 0.1, 0.3),
        remedy("hybrid", 0.5, 4.0),
        remedy("lstm+a", 0.1, 1.0),
        remedy("lstm+b", 0.3, 1.0),
        remedy("lstm+c", 0.9, 1.0),
    ]
    agg = dict(
        y="mi",
        subject={"variant": "lstm+agg"},
        baseline={"variant": "lstm"},
        factor=2.0,
        at_least=0.1,
    )
    assert verdict(checks.times_baseline(rows, **agg)) == "PASS"
    assert (
        verdict(checks.times_baseline(rows, **{**agg, "factor": 10.0})) == "FAIL"
    )  # 0.3 < 10 x 0.05
    assert verdict(checks.times_baseline(rows, **{**agg, "at_least": 0.5})) == "FAIL"
    assert verdict(checks.times_baseline(rows[1:], **agg)) == "INCONCLUSIVE"  # no plain LSTM
    others = {"variant": ("lstm+a", "lstm+b", "lstm+c")}
    med = checks.at_least_median(rows, y="z_gain_bpc", subject={"variant": "hybrid"}, others=others)
    assert (
        verdict(med) == "PASS"
        and next(v for k, v in med["measured"].items() if "median" in k) == 0.3
    )
    low = [r if r["variant"] != "hybrid" else remedy("hybrid", 0.2, 4.0) for r in rows]
    assert (
        verdict(
            checks.at_least_median(
                low, y="z_gain_bpc", subject={"variant": "hybrid"}, others=others
            )
        )
        == "FAIL"
    )

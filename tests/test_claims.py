"""Claim checks on synthetic summary rows: each gives PASS, FAIL and INCONCLUSIVE (a missing
point, a failed trial) where expected; rank correlation and seed averaging by hand."""

import math

import pytest

from studies import claims
from studies.errors import StudyError
from studies.spec import Claim, builtin_studies, load_study


def row(status="completed", kl=0.1, total=2.0, rec=None, **params):
    return {**params, "status": status, "kl_bpc": kl, "total_bpc": total,
            "rec_bpc": total - kl if rec is None else rec, "aux_bpc": math.nan}


def verdict(result):
    assert set(result) >= {"verdict", "measured", "threshold", "note"}
    assert result["verdict"] in claims.VERDICTS
    return result["verdict"]


# --- rank correlation and averaging ---------------------------------------------------------


def test_ranks_average_ties():
    assert claims.ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]


def test_spearman_by_hand():
    assert claims.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert claims.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x 1..4, y 1,3,2,4: d^2 = 0+1+1+0 = 2, rho = 1 - 6*2/(4*15) = 0.8
    assert claims.spearman([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4]) == pytest.approx(0.8)
    # with ties: Pearson of average ranks
    assert claims.spearman([1, 2, 3], [5, 5, 6]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(claims.spearman([1, 2, 3], [7, 7, 7]))


def test_seeds_are_averaged_and_only_usable_trials_count():
    rows = [row(alpha=0.2, seed=0, kl=0.1), row(alpha=0.2, seed=1, kl=0.3), row("failed", alpha=0.2, seed=2, kl=9.0),
            row("collapsed", alpha=0.5, seed=0, kl=0.01), row("failed", alpha=0.8, kl=0.5)]
    points = {p["alpha"]: p for p in claims.average(rows)}
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
    assert verdict(claims.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.0, 0.1, 0.2)), **SPEARMAN)) == "PASS"
    fail = claims.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.3, 0.1, 0.2)), **SPEARMAN)
    assert verdict(fail) == "FAIL"
    assert fail["measured"]["spearman(alpha, kl_bpc) at anneal=False"] == pytest.approx(-0.5)
    flat = claims.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.0, 0.0, 0.0)), **SPEARMAN)
    assert verdict(flat) == "FAIL" and "constant" in flat["note"]
    failed = claims.spearman_by_group(sweep((0.1, 0.2, 0.3), (0.0, 0.1, 0.2), status={4: "failed"}), **SPEARMAN)
    assert verdict(failed) == "INCONCLUSIVE" and "alpha=0.5" in failed["note"] and "failed" in failed["note"]
    two = claims.spearman_by_group(sweep((0.1, 0.2), (0.0, 0.1), alphas=(0.2, 0.8)), **SPEARMAN)
    assert verdict(two) == "INCONCLUSIVE" and "needs >= 3 values of alpha" in two["note"]
    assert verdict(claims.spearman_by_group([], **SPEARMAN)) == "INCONCLUSIVE"


COMPARE = dict(at={"alpha": 0.2}, y="kl_bpc", group="anneal", greater=True, lesser=False)


def test_compare_at():
    assert verdict(claims.compare_at([row(alpha=0.2, anneal=True, kl=0.3), row(alpha=0.2, anneal=False, kl=0.3)],
                                     **COMPARE)) == "PASS"  # >= : equal passes
    assert verdict(claims.compare_at([row(alpha=0.2, anneal=True, kl=0.1), row(alpha=0.2, anneal=False, kl=0.3)],
                                     **COMPARE)) == "FAIL"
    missing = claims.compare_at([row(alpha=0.2, anneal=True), row(alpha=0.5, anneal=False)], **COMPARE)
    assert verdict(missing) == "INCONCLUSIVE" and "no trial with alpha=0.2, anneal=False" in missing["note"]
    failed = claims.compare_at([row(alpha=0.2, anneal=True), row("failed", alpha=0.2, anneal=False)], **COMPARE)
    assert verdict(failed) == "INCONCLUSIVE" and "anneal=False: failed" in failed["note"]


def frag(variant, share12, share60, status60="completed"):
    return [row(variant=variant, length=12, kl=share12 * 2.0, total=2.0),
            row(status60, variant=variant, length=60, kl=share60 * 2.0, total=2.0)]


def test_ratio_between_below_and_at_least():
    below = dict(where={"variant": "lstm p=0.2"}, x="length", lo=12, hi=60, y="kl_share", below=0.25)
    at_least = dict(where={"variant": "hybrid a=0.2"}, x="length", lo=12, hi=60, y="kl_share", at_least=0.5)
    rows = frag("lstm p=0.2", 0.2, 0.01) + frag("hybrid a=0.2", 0.2, 0.15)
    passed = claims.ratio_between(rows, **below)
    assert verdict(passed) == "PASS" and passed["measured"]["ratio length=60 / length=12"] == pytest.approx(0.05)
    assert verdict(claims.ratio_between(rows, **at_least)) == "PASS"
    rows = frag("lstm p=0.2", 0.2, 0.1) + frag("hybrid a=0.2", 0.2, 0.05)
    assert verdict(claims.ratio_between(rows, **below)) == "FAIL"
    assert verdict(claims.ratio_between(rows, **at_least)) == "FAIL"
    rows = frag("lstm p=0.2", 0.2, 0.01)[:1] + frag("hybrid a=0.2", 0.2, 0.15, status60="failed")
    assert verdict(claims.ratio_between(rows, **below)) == "INCONCLUSIVE"
    assert verdict(claims.ratio_between(rows, **at_least)) == "INCONCLUSIVE"
    with pytest.raises(StudyError, match="exactly one of below, at_least"):
        claims.ratio_between(rows, where={}, x="length", lo=12, hi=60, y="kl_share")


RATIO_VS = dict(x="length", at=(30, 50), y="rec_bpc", numerator={"variant": "lstm p=1"},
                denominator={"variant": "conv"}, at_least=2.0)


def historyless(lstm30, lstm50, conv=0.5, status=None):
    rows = [row(variant="lstm p=1", length=30, rec=lstm30), row(variant="lstm p=1", length=50, rec=lstm50),
            row(variant="conv", length=30, rec=conv), row(variant="conv", length=50, rec=conv)]
    for i, s in (status or {}).items():
        rows[i]["status"] = s
    return rows


def test_ratio_vs():
    assert verdict(claims.ratio_vs(historyless(1.0, 2.0), **RATIO_VS)) == "PASS"
    fail = claims.ratio_vs(historyless(1.5, 0.9), **RATIO_VS)  # 3x at 30 but 1.8x at 50
    assert verdict(fail) == "FAIL" and fail["measured"]["rec_bpc ratio at length=50"] == pytest.approx(1.8)
    assert verdict(claims.ratio_vs(historyless(1.0, 2.0)[:3], **RATIO_VS)) == "INCONCLUSIVE"
    assert verdict(claims.ratio_vs(historyless(1.0, 2.0, status={3: "failed"}), **RATIO_VS)) == "INCONCLUSIVE"


def test_value_at():
    params = dict(where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0)
    assert verdict(claims.value_at(historyless(1, 2, conv=1.0), **params)) == "PASS"
    assert verdict(claims.value_at(historyless(1, 2, conv=1.2), **params)) == "FAIL"
    assert verdict(claims.value_at(historyless(1, 2)[:3], **params)) == "INCONCLUSIVE"
    assert verdict(claims.value_at(historyless(1, 2, status={3: "failed"}), **params)) == "INCONCLUSIVE"
    nan = historyless(1, 2)
    nan[3]["rec_bpc"] = math.nan
    result = claims.value_at(nan, **params)
    assert verdict(result) == "INCONCLUSIVE" and "not a number" in result["note"]
    assert verdict(claims.value_at(historyless(1, 2, conv=1.2), where=params["where"], y="rec_bpc",
                                   at_least=1.0)) == "PASS"


def bytenet(kl, status=None):
    """kl: {(alpha, depth): kl_bpc}"""
    return [row((status or {}).get(k, "completed"), alpha=k[0], depth=k[1], kl=v) for k, v in kl.items()]


BELOW = dict(where={"alpha": 0.0}, x="depth", x_min=3, y="kl_bpc", threshold=0.02)
ABOVE = dict(where={"alpha": (0.2, 0.5)}, y="kl_bpc", threshold=0.05)
MEAN = dict(group="alpha", y="kl_bpc", greater=0.5, lesser=0.2)


def test_all_below():
    grid = {(0.0, 1): 0.3, (0.0, 3): 0.01, (0.0, 5): 0.0}
    assert verdict(claims.all_below(bytenet(grid), **BELOW)) == "PASS"  # depth 1 is not in scope
    assert verdict(claims.all_below(bytenet({**grid, (0.0, 5): 0.02}), **BELOW)) == "FAIL"  # strict <
    assert verdict(claims.all_below(bytenet({**grid, (0.0, 3): 0.05}), **BELOW)) == "FAIL"
    # a failed trial outside the scope does not matter; one inside does
    assert verdict(claims.all_below(bytenet(grid, status={(0.0, 1): "failed"}), **BELOW)) == "PASS"
    assert verdict(claims.all_below(bytenet(grid, status={(0.0, 3): "failed"}), **BELOW)) == "INCONCLUSIVE"
    none = claims.all_below(bytenet({(0.0, 1): 0.3}), **BELOW)
    assert verdict(none) == "INCONCLUSIVE" and "depth >= 3" in none["note"]


def test_all_above():
    grid = {(0.2, 1): 0.1, (0.2, 4): 0.06, (0.5, 1): 0.2, (0.5, 4): 0.3, (0.0, 4): 0.0}
    assert verdict(claims.all_above(bytenet(grid), **ABOVE)) == "PASS"  # alpha=0 is not in scope
    assert verdict(claims.all_above(bytenet({**grid, (0.2, 4): 0.04}), **ABOVE)) == "FAIL"
    # every depth counts, not only the last one listed per alpha, and each is reported
    low_first = claims.all_above(bytenet({**grid, (0.2, 1): 0.04}), **ABOVE)
    assert verdict(low_first) == "FAIL"
    assert low_first["measured"]["alpha=0.2, depth=1"] == 0.04 and len(low_first["measured"]) == 4
    missing = claims.all_above(bytenet({k: v for k, v in grid.items() if k[0] != 0.2}), **ABOVE)
    assert verdict(missing) == "INCONCLUSIVE" and "no trial with alpha=0.2" in missing["note"]
    failed = claims.all_above(bytenet(grid, status={(0.5, 4): "failed"}), **ABOVE)
    assert verdict(failed) == "INCONCLUSIVE" and "alpha=0.5, depth=4: failed" in failed["note"]


def test_mean_greater():
    grid = {(0.2, 1): 0.1, (0.2, 4): 0.2, (0.5, 1): 0.1, (0.5, 4): 0.3}
    result = claims.mean_greater(bytenet(grid), **MEAN)
    assert verdict(result) == "PASS" and result["measured"]["mean kl_bpc at alpha=0.5"] == pytest.approx(0.2)
    assert verdict(claims.mean_greater(bytenet({**grid, (0.5, 4): 0.2}), **MEAN)) == "FAIL"  # strict >
    assert verdict(claims.mean_greater(bytenet({(0.5, 1): 0.1, (0.5, 4): 0.3}), **MEAN)) == "INCONCLUSIVE"
    assert verdict(claims.mean_greater(bytenet(grid, status={(0.2, 1): "failed"}), **MEAN)) == "INCONCLUSIVE"


MAX_VS = dict(y="kl_bpc", subject={"variant": "hybrid a=0.2"},
              others={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")})


def dropout(hybrid, lstm=(0.01, 0.05, 0.1), status=None):
    rows = [row(variant=f"lstm p={p}", kl=k) for p, k in zip((0.2, 0.5, 0.8), lstm)]
    rows.append(row(variant="hybrid a=0.2", kl=hybrid))
    for i, s in (status or {}).items():
        rows[i]["status"] = s
    return rows


def test_max_vs():
    result = claims.max_vs(dropout(0.3), **MAX_VS)
    assert verdict(result) == "PASS" and len(result["measured"]) == 4
    assert verdict(claims.max_vs(dropout(0.08), **MAX_VS)) == "FAIL"
    assert verdict(claims.max_vs(dropout(0.3)[1:], **MAX_VS)) == "INCONCLUSIVE"
    assert verdict(claims.max_vs(dropout(0.3, status={3: "failed"}), **MAX_VS)) == "INCONCLUSIVE"
    # several rival points per listed value: each is kept and the largest counts, wherever it sits
    rows = [row(variant="lstm p=0.2", length=12, kl=0.5), row(variant="lstm p=0.2", length=60, kl=0.01),
            row(variant="hybrid a=0.2", kl=0.3)]
    result = claims.max_vs(rows, y="kl_bpc", subject={"variant": "hybrid a=0.2"}, others={"variant": "lstm p=0.2"})
    assert verdict(result) == "FAIL" and len(result["measured"]) == 3


def test_several_seeds_of_a_point_are_one_point_not_ambiguous():
    rows = [row(variant="conv", length=50, rec=0.8, seed=0), row(variant="conv", length=50, rec=1.1, seed=1)]
    result = claims.value_at(rows, where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0)
    assert verdict(result) == "PASS" and result["measured"]["rec_bpc at variant=conv, length=50"] == pytest.approx(0.95)


# --- a study's claims -------------------------------------------------------------------------


def test_every_builtin_claim_names_a_check_with_its_params():
    for name in builtin_studies():
        study = load_study(name)
        results = claims.evaluate(study, [], "smoke")
        assert [r["id"] for r in results] == [c.id for c in study.claims]
        assert all(r["verdict"] == "INCONCLUSIVE" for r in results)


def test_evaluate_counts_grid_points_without_rows_as_missing():
    study = load_study("alpha-sweep")
    rows = [row(alpha=a, anneal=an, kl=a * (1.2 if an else 1.0)) for a in (0.2, 0.8) for an in (True, False)]
    by_id = {r["id"]: r for r in claims.evaluate(study, rows, "smoke")}
    assert by_id["annealing-helps-at-small-alpha"]["verdict"] == "PASS"
    assert by_id["kl-grows-with-alpha"]["verdict"] == "INCONCLUSIVE"  # smoke has 2 alphas
    full = [row(alpha=a, anneal=an, kl=a) for a in study.grid["alpha"] for an in (True, False)]
    by_id = {r["id"]: r for r in claims.evaluate(study, full, "cpu")}
    assert by_id["kl-grows-with-alpha"]["verdict"] == "PASS"
    by_id = {r["id"]: r for r in claims.evaluate(study, full[:-2], "cpu")}  # alpha=1.0 never ran
    assert by_id["kl-grows-with-alpha"]["verdict"] == "INCONCLUSIVE"
    assert "alpha=1.0" in by_id["kl-grows-with-alpha"]["note"] and "missing" in by_id["kl-grows-with-alpha"]["note"]


def test_a_bad_claim_in_a_study_file_is_a_study_error():
    import dataclasses

    study = load_study("alpha-sweep")
    bad = dataclasses.replace(study, claims=(Claim("x", "x", "no_such_check"),))
    with pytest.raises(StudyError, match="unknown check 'no_such_check'"):
        claims.evaluate(bad, [])
    bad = dataclasses.replace(study, claims=(Claim("x", "x", "value_at", dict(where={}, y="kl_bpc", at_mst=1)),))
    with pytest.raises(StudyError, match="unknown at_mst"):
        claims.evaluate(bad, [])
    bad = dataclasses.replace(study, claims=(Claim("x", "x", "value_at", dict(where={}, y="kl", at_most=1)),))
    with pytest.raises(StudyError, match="claim x: y='kl' is not a measure"):
        claims.evaluate(bad, [])

"""A study's claims judged per seed: controls, the verdict over seeds (UNSTABLE when seeds
disagree), missing trials, and every built-in study's claims wired to its grid."""

import dataclasses
from pathlib import Path
import math

import pytest

from studies.results import checks, claims
from studies.errors import StudyError
from studies.loading import builtin_studies, load_study
from studies.spec import Claim, Control

SEEDS = (0, 1, 2)


def world(study, point, config):
    """Measures of a trial in a world where every claim of the paper holds."""
    m = dict(active_units=3.0, mutual_info=0.5, mi_pool=0.6, unigram_bpc=4.3, aux_bpc=math.nan)
    if study.name == "historyless":
        rec = 0.5 if config.model == "conv" else 3.0 + config.length / 100
        m.update(rec_bpc=rec, kl_bpc=0.0)
    elif study.name == "fragment-length":
        share = 0.2 if config.model != "lstm" else (0.1 if config.length == 12 else 0.001)
        m.update(rec_bpc=1.5 * (1 - share), kl_bpc=1.5 * share)
    elif study.name == "alpha-sweep":
        kl = config.alpha if config.anneal else max(0.0, config.alpha - 0.25)
        m.update(kl_bpc=kl, rec_bpc=1.5 + config.alpha - kl)
    elif study.name == "bytenet-depth":
        kl = {0.0: 0.1 if config.depth <= 2 else 0.001, 0.2: 0.3, 0.5: 0.6}[config.alpha]
        m.update(kl_bpc=kl, rec_bpc=1.5)
    elif study.name == "dropout":
        kl, rec = {0.2: (0.02, 1.5), 0.5: (0.05, 1.7), 0.8: (0.1, 2.0)}.get(
            config.dropout, (0.3, 1.3)
        )
        m.update(kl_bpc=kl, rec_bpc=rec)
    elif study.name == "remedies":  # plain LSTM VAE collapsed, every remedy and the hybrid read z
        variant = point["variant"]
        z_gain, mi = (
            (0.0, 0.01)
            if variant == "lstm"
            else (0.3, 4.0)
            if variant.startswith("hybrid")
            else (0.1, 0.5)
        )
        m.update(
            kl_bpc=0.001 if variant == "lstm" else 0.2,
            rec_bpc=1.5,
            z_gain_bpc=z_gain,
            mutual_info=mi,
            mi_pool=mi,
            iw_nll_bpc=1.55 if variant.startswith("hybrid") else 1.5,
        )
    elif study.name == "ptb-words":  # at texar-pytorch's numbers, after 2 lr halvings
        m.update(rec_bpc=math.nan, kl_bpc=math.nan, test_nll_nats=102.54, test_kl_nats=5.1)
        m.update(plateau_decays=2.0)
    m["total_bpc"] = m["rec_bpc"] + m["kl_bpc"]
    return m


def rows_for(study, preset="cpu", seeds=SEEDS, change=None):
    """One row per trial of the preset's grid and seeds; `change(row)` may edit a row."""
    rows = []
    for seed in seeds:
        for point in study.points(preset):
            config = study.trial_config(preset, {**point, "seed": seed})
            r = {
                **point,
                "corpus": config.corpus,
                "model": config.model,
                "length": config.length,
                "alpha": config.alpha,
                "dropout": config.dropout,
                "depth": config.depth,
                "anneal": config.anneal,
                "seed": seed,
                "status": "completed",
                **world(study, point, config),
            }
            r["history"] = {1000: {k: r[k] for k in ("rec_bpc", "kl_bpc", "total_bpc")}}
            if change:
                change(r)
            rows.append(r)
    return rows


@pytest.mark.parametrize("name", [n for n in builtin_studies() if load_study(n).claims])
def test_every_claim_of_a_builtin_study_passes_where_the_paper_holds(name):
    study = load_study(name)
    results = claims.evaluate(study, rows_for(study), "cpu", SEEDS)
    assert {r["id"]: r["verdict"] for r in results} == {c.id: "PASS" for c in study.claims}
    for r in results:
        assert [s["seed"] for s in r["seeds"]] == list(SEEDS) and all(
            s["verdict"] == "PASS" for s in r["seeds"]
        )
        assert len(r["controls"]) == len(next(c for c in study.claims if c.id == r["id"]).controls)


def test_a_failed_control_makes_the_claim_inconclusive_never_pass_or_fail():
    study = load_study("fragment-length")

    def collapse_lstm(r):  # every LSTM VAE collapsed already at L=12
        if r["variant"].startswith("lstm"):
            r.update(active_units=0.0, mutual_info=0.001, mi_pool=0.002)

    by_id = {
        r["id"]: r
        for r in claims.evaluate(study, rows_for(study, change=collapse_lstm), "cpu", SEEDS)
    }
    for cid in ("lstm-p0.2-kl-share-vanishes", "lstm-p0.5-kl-share-vanishes"):
        assert by_id[cid]["verdict"] == "INCONCLUSIVE"
        assert (
            "control failed" in by_id[cid]["note"] and "cannot test the claim" in by_id[cid]["note"]
        )
        assert all(s["controls"][0]["verdict"] == "FAIL" for s in by_id[cid]["seeds"])
    assert by_id["hybrid-kl-share-holds"]["verdict"] == "PASS"


def test_seeds_that_disagree_are_unstable_and_say_how_many_gave_which():
    study = load_study("bytenet-depth")

    def seed2_keeps_kl(r):  # seed 2: alpha=0 at depth 6 keeps its KL
        if r["seed"] == 2 and r["alpha"] == 0.0 and r["depth"] == 6:
            r["kl_bpc"] = 0.04

    results = {
        r["id"]: r
        for r in claims.evaluate(study, rows_for(study, change=seed2_keeps_kl), "cpu", SEEDS)
    }
    collapse = results["collapse-without-aux"]
    assert (
        collapse["verdict"] == "UNSTABLE"
        and collapse["note"] == "seeds disagree: 2 PASS, 1 FAIL of 3"
    )
    assert [s["verdict"] for s in collapse["seeds"]] == ["PASS", "PASS", "FAIL"]
    key = "alpha=0.0, depth=6"
    assert collapse["measured"][key] == pytest.approx((0.001 * 2 + 0.04) / 3)
    assert collapse["spread"][key] == pytest.approx([0.001, 0.04])
    assert results["aux-keeps-kl"]["verdict"] == "PASS"


def test_ptb_words_fails_outside_the_band_and_is_inconclusive_without_a_decay():
    study = load_study("ptb-words")

    def verdicts(change):
        return {
            r["id"]: r["verdict"]
            for r in claims.evaluate(study, rows_for(study, seeds=(0,), change=change), "cpu", (0,))
        }

    assert verdicts(lambda r: r.update(test_nll_nats=104.0)) == {
        "anchor-test-nll": "FAIL",
        "uses-z": "PASS",
    }
    assert verdicts(lambda r: r.update(test_kl_nats=0.2))["uses-z"] == "FAIL"
    assert set(verdicts(lambda r: r.update(plateau_decays=0.0)).values()) == {"INCONCLUSIVE"}
    # the band is PTB's: on another corpus the anchor claim cannot be tested, the KL one can
    assert verdicts(lambda r: r.update(corpus="/data/wiki.txt")) == {
        "anchor-test-nll": "INCONCLUSIVE",
        "uses-z": "PASS",
    }


def test_a_seed_with_a_missing_trial_is_inconclusive_in_that_seed():
    study = load_study("dropout")
    rows = [r for r in rows_for(study) if not (r["seed"] == 1 and r["variant"] == "lstm p=0.5")]
    by_id = {r["id"]: r for r in claims.evaluate(study, rows, "cpu", SEEDS)}
    tradeoff = by_id["lstm-dropout-tradeoff"]
    assert [s["verdict"] for s in tradeoff["seeds"]] == ["PASS", "INCONCLUSIVE", "PASS"]
    assert tradeoff["verdict"] == "UNSTABLE" and "1 INCONCLUSIVE" in tradeoff["note"]
    assert "missing" in tradeoff["seeds"][1]["note"]
    # a seed the study ran but that has no row at all is missing everywhere
    only_two = [r for r in rows_for(study) if r["seed"] != 2]
    assert {r["verdict"] for r in claims.evaluate(study, only_two, "cpu", SEEDS)} == {"UNSTABLE"}


def test_all_seeds_fail_is_fail_and_all_inconclusive_is_inconclusive():
    study = load_study("alpha-sweep")

    def flat(r):
        r["kl_bpc"] = 0.3 - r["alpha"] / 10  # KL falls with alpha

    by_id = {r["id"]: r for r in claims.evaluate(study, rows_for(study, change=flat), "cpu", SEEDS)}
    assert by_id["kl-grows-with-alpha"]["verdict"] == "FAIL"

    def none(r):
        r["kl_bpc"] = 0.0

    by_id = {r["id"]: r for r in claims.evaluate(study, rows_for(study, change=none), "cpu", SEEDS)}
    assert by_id["annealing-lowers-onset"]["verdict"] == "INCONCLUSIVE"
    assert claims.overall(["PASS", "PASS"]) == ("PASS", "")
    assert claims.overall(["INCONCLUSIVE", "FAIL", "PASS"]) == (
        "UNSTABLE",
        "seeds disagree: 1 PASS, 1 FAIL, 1 INCONCLUSIVE of 3",
    )


def test_every_builtin_claim_names_a_check_with_its_params():
    for name in builtin_studies():
        study = load_study(name)
        results = claims.evaluate(study, [], "smoke")
        assert [r["id"] for r in results] == [c.id for c in study.claims]
        assert all(r["verdict"] == "INCONCLUSIVE" for r in results)


def test_a_bad_claim_or_control_is_a_study_error_where_it_is_made():
    with pytest.raises(StudyError, match="claim x: check='no_such_check' is not a function"):
        Claim("x", "x", "no_such_check")
    with pytest.raises(StudyError, match="claim x: check value_at takes .*at_mst"):
        Claim("x", "x", checks.value_at, dict(where={}, y="kl_bpc", at_mst=1))
    with pytest.raises(StudyError, match="claim x: check value_at takes"):
        Claim("x", "x", checks.value_at, dict(y="kl_bpc", at_most=1))  # `where` missing
    with pytest.raises(StudyError, match="control 'c': check not_collapsed takes"):
        Control("c", checks.not_collapsed, dict(wher={}))
    # a measure that does not exist is found when the study is made, in the claim's name
    study = load_study("alpha-sweep")
    with pytest.raises(StudyError, match="claim x: y='kl' is not a measure"):
        dataclasses.replace(
            study, claims=(Claim("x", "x", checks.value_at, dict(where={}, y="kl", at_most=1)),)
        )


DROPOUT = Path(__file__).resolve().parents[1] / "studies" / "definitions" / "dropout.py"


@pytest.mark.parametrize(
    "old, new, says",
    [
        (
            'LSTMS = {"variant":',
            'LSTMS = {"varaint":',
            "claim lstm-dropout-tradeoff: where key 'varaint' is not a hyperparameter",
        ),
        (
            'HYBRID = {"variant":',
            'HYBRID = {"varaint":',
            "claim hybrid-holds-more: subject key 'varaint' is not a hyperparameter",
        ),
        (
            'dict(y="kl_bpc", subject=HYBRID',
            'dict(y="kl_bcp", subject=HYBRID',
            "claim hybrid-holds-more: y='kl_bcp' is not a measure; expected one of total_bpc",
        ),
    ],
    ids=["where", "subject", "y"],
)
def test_a_study_file_with_a_misspelt_claim_key_is_refused_before_anything_is_made(
    tmp_path, old, new, says
):
    """Run by path, a copy of dropout.py with one key misspelt: one line naming the key and
    what is allowed, exit 2, and no study folder (no MLflow run, no Ray)."""
    from click.testing import CliRunner

    from cli.main import cli

    text = DROPOUT.read_text()
    assert text.count(old) == 1
    path = tmp_path / "my_dropout.py"
    path.write_text(text.replace(old, new))
    folder = tmp_path / "study"
    res = CliRunner().invoke(cli, ["run", str(path), "--preset", "smoke", "--storage", str(folder)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.output
    assert not folder.exists() and "Traceback" not in res.output


def test_the_speed_claim_is_judged_in_claims_not_in_the_cli():
    assert (
        claims.speed_claim(1.47)["verdict"] == "PASS"
        and claims.speed_claim(1.4)["verdict"] == "PASS"
    )
    assert claims.speed_claim(1.37)["verdict"] == "FAIL"
    assert claims.speed_claim(math.nan)["verdict"] == "INCONCLUSIVE"
    assert claims.speed_claim(1.5)["threshold"] == 1.4  # fixed before any run


def test_the_tally_counts_each_verdict_once_in_a_fixed_order():
    verdicts = [{"verdict": v} for v in ("UNSTABLE", "PASS", "FAIL", "PASS")]
    assert claims.tally(verdicts) == "2 PASS, 1 FAIL, 1 UNSTABLE"
    assert claims.tally([]) == ""


def test_a_study_metric_must_be_a_valid_measure_of_the_vocabulary():
    study = load_study("dropout")
    for metric, message in (
        ("valid/totl_bpc", "'totl_bpc' is not a measure"),
        ("test/total_bpc", "is not reported under 'test'"),
        ("train/total_bpc", "not a valid-split measure"),
    ):
        with pytest.raises(StudyError, match=message):
            dataclasses.replace(study, metric=metric)
    assert dataclasses.replace(study, metric="valid/nll_nats").metrics == ("valid/nll_nats",)

"""The collapse remedies of later work as TrainConfig fields: free bits, cyclical annealing,
aggressive encoder training and BN-VAE, each usable by every model."""

import math

import pytest
import torch

from textvae_core import ConfigError, KLSchedule, build_model, gaussian_kl, make_config
from textvae_core.losses import free_bits_kl
from textvae_core.train import Trainer

V = 54


def tiny(model, **overrides):
    return make_config(model, "tiny", {"corpus": "synthetic", "threads": 1, **overrides})


def test_free_bits_gives_no_gradient_to_dimensions_under_the_target():
    g = torch.Generator().manual_seed(0)
    mu = (torch.randn(32, 4, generator=g) * torch.tensor([0.01, 0.01, 2.0, 2.0])).requires_grad_()
    logvar = torch.zeros(32, 4).requires_grad_()
    per_dim = (0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)).mean(0)
    target = 0.25
    assert (per_dim[:2] < target).all() and (per_dim[2:] > target).all()
    free_bits_kl(mu, logvar, target).backward()
    assert torch.equal(mu.grad[:, :2], torch.zeros(32, 2)) and torch.equal(
        logvar.grad[:, :2], torch.zeros(32, 2)
    )
    assert mu.grad[:, 2:].abs().sum() > 0
    # above the target it is the plain KL
    assert torch.isclose(free_bits_kl(mu, logvar, 0.0), gaussian_kl(mu, logvar).mean())


def test_cyclical_weights_cycle_over_the_whole_run_from_step_0():
    """Fu et al. (2019): M cycles over the whole run, whatever the model's own ramp; in each
    the weight is 0 at the cycle's first step and reaches 1 at cycle_ratio of the cycle."""
    cfg = make_config(
        "lstm",
        "tiny",
        {"anneal_start": 600, "anneal_end": 700, "steps": 800, "cycles": 4, "cycle_ratio": 0.5},
    )
    s = KLSchedule.of(cfg)
    # 4 cycles of 200 steps over [0, 800]; the weight rises over the first 100 of each
    for cycle_start in (0, 200, 400, 600):
        assert s.weight_at(cycle_start) == 0.0
        assert s.weight_at(cycle_start + 50) == pytest.approx(0.5)
        assert s.weight_at(cycle_start + 99) == pytest.approx(0.99)
        assert s.weight_at(cycle_start + 100) == 1.0 == s.weight_at(cycle_start + 199)
    assert s.weight_at(800) == 1.0
    # a period that is not a whole number of steps: 3 cycles of 266.67 steps, ratio 0.25
    odd = KLSchedule.of(
        make_config("lstm", "tiny", {"steps": 800, "cycles": 3, "cycle_ratio": 0.25})
    )
    assert odd.weight_at(0) == 0.0 and odd.weight_at(267) == pytest.approx(1 / 200)
    assert odd.weight_at(534) == pytest.approx(2 / 200) and odd.weight_at(600) == 1.0
    # the ramp may start after the end of training: the cycles ignore it
    late = make_config("lstm", "tiny", {"anneal_start": 2000, "anneal_end": 3000, "cycles": 2})
    assert KLSchedule.of(late).weight_at(6) == pytest.approx(0.4)  # 2 cycles of 30 steps
    plain = KLSchedule.of(
        make_config("lstm", "tiny", {"anneal_start": 100, "anneal_end": 300, "steps": 900})
    )
    assert plain.weight_at(300) == 1.0 == plain.weight_at(700)  # no cycles: one ramp, then 1
    assert plain.weight_at(0) == cfg.kl_eps


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"free_bits": -1}, "free_bits"),
        ({"cycles": -1}, "cycles"),
        ({"cycles": 2, "anneal": False}, "cycles"),
        ({"cycle_ratio": 0}, "cycle_ratio"),
        ({"bn_gamma": 0}, "bn_gamma"),
        ({"aggressive_max_inner": 0}, "aggressive_max_inner"),
        ({"aggressive_check_every": -1}, "aggressive_check_every"),
        ({"cycles": 61}, "cycles"),
    ],
)
def test_bad_remedy_settings_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}="):
        make_config("lstm", "tiny", overrides)


@pytest.mark.parametrize("model", ["conv", "hybrid-lstm", "hybrid-bytenet", "lstm"])
def test_bn_vae_bounds_the_batch_mean_kl_below(model):
    """In training mode each posterior-mean dimension has batch variance gamma^2 v / (v + eps)
    (v its variance before the norm) and mean beta_d, and each dimension's KL is >= mu^2 / 2, so
    the batch-mean KL is >= sum_d (gamma^2 v_d / (v_d + eps) + beta_d^2) / 2, ~Z gamma^2 / 2."""
    gamma = 0.6
    cfg = make_config(model, "tiny", {"bn_vae": True, "bn_gamma": gamma, "length": 16})
    net = build_model(cfg, V).train()
    assert not net.mu_norm.weight.requires_grad and torch.all(net.mu_norm.weight == gamma)
    for seed in range(3):
        x = torch.randint(4, V, (64, 16), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            v = net.posterior(x)[0].var(0, unbiased=False)
            mu, logvar = net.encode(x)
            bound = 0.5 * float((gamma**2 * v / (v + net.mu_norm.eps) + net.mu_norm.bias**2).sum())
            assert float(gaussian_kl(mu, logvar).mean()) >= bound * (1 - 1e-5)
        assert (
            bound > 0.5 * cfg.latent * gamma**2 * 0.3
        )  # and the floor is of the order of Z gamma^2 / 2


def test_aggressive_inner_loop_stops_when_a_window_of_15_is_worse_or_at_100():
    from textvae_core.aggressive import AGGRESSIVE_WINDOW, inner_loop_done

    assert AGGRESSIVE_WINDOW == 15 and make_config("lstm").aggressive_max_inner == 100

    def updates(losses, cap=100):
        """How many encoder updates the loop makes when their losses are `losses`."""
        done = []
        while not inner_loop_done(done, cap):
            done.append(losses[len(done)])
        return len(done)

    falling = [10.0 - 0.01 * i for i in range(200)]
    assert updates(falling) == 100  # never worse: the cap
    assert updates(falling, cap=7) == 7
    # the first window has none before it: a high loss in it only makes the second look better
    assert updates([1.0] * 14 + [9.0] + [1.0] * 200) == 100
    assert updates([5.0] * 15 + [6.0] * 200) == 30  # window 2 (mean 6) above window 1 (mean 5)
    # equal windows are not worse; windows are compared whole (a rise in the middle of one
    # is judged at its end)
    assert updates([5.0] * 45 + [5.5] + [5.0] * 200) == 60
    assert updates([5.0] * 100) == 100
    falling_then_rising = falling[:47] + [falling[46] + 0.1 * i for i in range(1, 100)]
    assert updates(falling_then_rising) == 60  # window 4 (46-59) above window 3 (30-44)


def test_aggressive_mode_ends_on_a_strict_drop_against_the_previous_check():
    from textvae_core.aggressive import mode_ends

    assert not mode_ends(0.5, 0.0)  # the first check compares with 0
    assert mode_ends(-0.01, 0.0)
    assert not mode_ends(0.7, 0.7)  # a tie keeps the mode on
    assert mode_ends(0.69, 0.7)


def _scripted_mi(trainer, values):
    """Make the trainer's held-out MI checks return `values` in turn; returns the calls."""
    calls = []

    def mi(n):
        calls.append((trainer.step, n))
        return values[len(calls) - 1]

    trainer.evaluator.pool_mutual_info = mi
    return calls


@pytest.mark.parametrize(
    "mis, checks",
    [
        ([0.5, 0.9, 0.9, 0.4, 1.0], 4),  # rises, ties, then drops at the 4th check
        ([-0.01, 1.0], 1),  # the first check is below 0: off at once
        ([0.2, 0.1, 5.0], 2),  # below the previous (not the best) check
    ],
)
def test_aggressive_checks_every_interval_and_ends_at_the_first_drop(mis, checks):
    cfg = tiny("lstm", aggressive=True, aggressive_max_inner=2, aggressive_check_every=3)
    tr = Trainer(cfg)
    calls = _scripted_mi(tr, mis)
    modes = []
    for _ in range(18):
        tr.train_step()
        modes.append(tr.aggressive_on)
    # checked at steps 3, 6, 9, ... while on, over the final MI's pool of validation fragments
    assert calls == [(3 * (i + 1), cfg.mi_pool) for i in range(checks)]
    assert modes == [True] * (3 * checks - 1) + [False] * (18 - 3 * checks + 1)


def test_aggressive_max_steps_caps_the_mode_whatever_the_checks_say():
    """A budget's cap (the `cpu` preset's): off after step `aggressive_max_steps` even while
    held-out MI keeps rising, and the checks before it still run."""
    cfg = tiny(
        "lstm",
        aggressive=True,
        aggressive_max_inner=2,
        aggressive_check_every=3,
        aggressive_max_steps=7,
    )
    tr = Trainer(cfg)
    calls = _scripted_mi(tr, [0.1, 0.2, 0.3, 0.4])
    modes = []
    for _ in range(12):
        tr.train_step()
        modes.append(tr.aggressive_on)
    assert [step for step, _ in calls] == [3, 6]
    assert modes == [True] * 6 + [False] * 6


def test_aggressive_check_interval_defaults_to_one_pass_over_the_training_data():
    cfg = tiny("lstm", aggressive=True)
    tr = Trainer(cfg)
    assert cfg.aggressive_check_every == 0
    assert tr.aggressive_check_every == len(tr.corpus.train) // cfg.length // cfg.batch_size


def test_aggressive_encoder_updates_start_on_the_decoders_batch_and_leave_the_decoder():
    cfg = tiny("lstm", aggressive=True, dropout=0.2)
    tr = Trainer(cfg)
    enc = {id(p) for p in tr.model.encoder_parameters()}
    assert enc and len(enc) < len(list(tr.model.parameters()))
    decoder_before = [p.detach().clone() for p in tr.model.parameters() if id(p) not in enc]
    batches, objective = [], tr._objective

    def spy(x):
        batches.append(x.clone())
        return objective(x)

    tr._objective = spy
    x = tr.sampler.sample()
    tr._train_encoder(x)  # encoder-only updates leave the decoder unchanged
    assert all(
        torch.equal(a, p)
        for a, p in zip(decoder_before, (p for p in tr.model.parameters() if id(p) not in enc))
    )
    assert torch.equal(batches[0], x) and not torch.equal(batches[1], x)
    assert 30 <= tr._encoder_updates == len(batches) <= 100
    assert tr._encoder_updates % 15 == 0 or tr._encoder_updates == 100

    # a whole run: reports count the encoder updates while the mode is on, none after
    tr = Trainer(tiny("lstm", aggressive=True, aggressive_check_every=10, steps=40, eval_every=10))
    _scripted_mi(tr, [0.5, 0.3, 1.0, 1.0])
    reports = []
    for _ in range(4):
        for _ in range(10):
            tr.train_step()
        reports.append(tr.report().metrics)
    assert [r["train/aggressive"] for r in reports] == [1.0, 0.0, 0.0, 0.0]
    assert reports[0]["train/encoder_updates"] >= 30 * 10
    assert reports[1]["train/encoder_updates"] >= 30 * 10  # on through step 20's check
    assert reports[2]["train/encoder_updates"] == reports[3]["train/encoder_updates"] == 0


def test_free_bits_active_is_the_share_of_dimensions_at_the_floor():
    from textvae_core.losses import free_bits_active

    # per-dimension KL (batch mean) with logvar 0 is mean(mu^2) / 2: 0.02, 0.25, 0.5, 2
    mu = torch.tensor([[0.2, 0.5, 1.0, 2.0], [-0.2, -0.5, -1.0, -2.0]])
    logvar = torch.zeros(2, 4)
    assert float(free_bits_active(mu, logvar, 0.25)) == 0.5  # at or below the floor: 2 of 4
    assert float(free_bits_active(mu, logvar, 0.01)) == 0.0
    assert float(free_bits_active(mu, logvar, 3.0)) == 1.0


def test_bn_mu_var_is_the_mean_batch_variance_of_the_means_entering_the_batchnorm():
    from textvae_core.diagnostics import batch_variance

    mu = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # per-dimension (biased) variances 1 and 4
    assert batch_variance(mu) == 2.5


def test_remedy_measures_appear_only_with_their_remedy():
    plain = Trainer(tiny("lstm", steps=4, eval_every=4))
    fb = Trainer(tiny("lstm", free_bits=1e6, steps=4, eval_every=4))  # every dimension at the floor
    bn = Trainer(tiny("hybrid-lstm", bn_vae=True, steps=4, eval_every=4))
    reports = {}
    for name, tr in (("plain", plain), ("fb", fb), ("bn", bn)):
        for _ in range(4):
            tr.train_step()
        reports[name] = tr.report().metrics
    assert not {"train/free_bits_active", "valid/bn_mu_var"} & set(reports["plain"])
    assert reports["fb"]["train/free_bits_active"] == 1.0 and "valid/bn_mu_var" not in reports["fb"]
    assert "train/free_bits_active" not in reports["bn"]
    # the report's value: the validation batches' means before the BatchNorm
    from textvae_core.diagnostics import batch_variance

    batches = bn.evaluator.validation_batches()
    with torch.no_grad():
        bn.model.eval()
        want = sum(batch_variance(bn.model.posterior(x)[0]) for x in batches) / len(batches)
    assert reports["bn"]["valid/bn_mu_var"] == pytest.approx(want, rel=1e-6)


def test_remedies_run_for_every_model():
    for model in ("conv", "hybrid-lstm", "hybrid-bytenet", "lstm"):
        cfg = tiny(
            model,
            free_bits=0.25,
            cycles=2,
            bn_vae=True,
            aggressive=True,
            aggressive_max_inner=3,
            steps=20,
            eval_every=10,
        )
        tr = Trainer(cfg)
        for _ in range(20):
            tr.train_step()
        m = tr.report().metrics
        assert torch.isfinite(torch.tensor([m["valid/total_bpc"], m["valid/z_gain_bpc"]])).all(), (
            model,
            m,
        )
        # each remedy took effect: its own measure is reported, the aggressive encoder made
        # its updates (at most 3 per step), BN-VAE's means entered the BatchNorm
        assert 0.0 <= m["train/free_bits_active"] <= 1.0 and m["valid/bn_mu_var"] > 0, (model, m)
        assert 20 <= m["train/encoder_updates"] <= 60 and m["train/aggressive"] in (0.0, 1.0)
        assert tr.model.mu_norm is not None and not tr.model.mu_norm.weight.requires_grad


def test_collapse_needs_kl_mi_and_z_gain_all_under_their_thresholds():
    from studies.run.trial import CollapseRule

    rule = CollapseRule(kl=0.005, mi=0.05, z_gain=0.02)
    low = {
        "train/kl_weight": 1.0,
        "valid/kl_bpc": 0.001,
        "valid/mutual_info": 0.01,
        "valid/z_gain_bpc": 0.0,
    }
    assert "kl_bpc 0.0010 < 0.005" in rule.collapsed(low)
    assert rule.collapsed({**low, "train/kl_weight": 0.5}) is None  # still annealing
    assert rule.collapsed({**low, "valid/mutual_info": 0.2}) is None  # z carries information
    assert (
        rule.collapsed({**low, "valid/z_gain_bpc": 0.1}) is None
    )  # the decoder reads z (free bits, BN-VAE)
    assert rule.collapsed({**low, "valid/kl_bpc": 0.3}) is None
    older = {k: v for k, v in low.items() if k != "valid/z_gain_bpc"}  # a report without z gain
    assert rule.collapsed(older) is not None

    # A trial stops after `patience` collapsed reports in a row, counted over its whole history.
    from textvae_core.history import Report

    alive = {**low, "valid/z_gain_bpc": 0.1}
    history = [Report(250 * (i + 1), m) for i, m in enumerate([low, low, alive, low, low])]
    patient = CollapseRule(kl=0.005, mi=0.05, z_gain=0.02, patience=3)
    assert patient.stop(history) is None  # 2 in a row since the last healthy report
    history.append(Report(1500, low))
    assert patient.stop(history) == (
        "KL collapsed: valid kl_bpc 0.0010 < 0.005, MI (nats) 0.0100 < 0.05, "
        "z gain (bits/char) 0.0000 < 0.02 for 3 reports after annealing (step 1500)"
    )
    assert patient.stop(history[:2]) is None  # fewer reports than the patience


def test_a_remedy_makes_a_collapsed_lstm_vae_read_z():
    """On `synthetic` (L=32, p=0.5, 800 steps, lr 3e-3, tiny sizes, the fused cell it was
    measured with) the plain LSTM VAE ignores z while BN-VAE (gamma=1) makes its decoder read
    it. Measured here: z gain 0.0018 vs 0.27 bits/char (MI 0.003 vs 1.67 nats); free bits
    (1 nat per dimension) gave 0.077."""
    from textvae_core import fit

    base = dict(
        corpus="synthetic",
        steps=800,
        eval_every=400,
        iw_samples=0,
        threads=1,
        seed=0,
        dropout=0.5,
        length=32,
        anneal_start=100,
        anneal_end=300,
        lr=3e-3,
        lstm_cell="fused",
    )
    plain = fit(make_config("lstm", "tiny", base)).history[-1].metrics
    remedied = (
        fit(make_config("lstm", "tiny", {**base, "bn_vae": True, "bn_gamma": 1.0}))
        .history[-1]
        .metrics
    )
    print(
        f"z gain: plain {plain['valid/z_gain_bpc']:.4f}, "
        f"bn-vae {remedied['valid/z_gain_bpc']:.4f} bits/char"
    )
    assert plain["valid/z_gain_bpc"] < 0.02, plain
    assert remedied["valid/z_gain_bpc"] >= 0.05, remedied


@pytest.mark.parametrize(
    "remedy",
    [
        {"free_bits": 1e6},  # a floor far above any KL: the training term would be 1e6 nats/dim
        {"cycles": 4},  # step 4 of 16 is at a cycle's start: the training weight is ~0
        {"bn_vae": True, "bn_gamma": 0.9},
        {"aggressive": True, "aggressive_max_inner": 2},
    ],
    ids=["free-bits", "cyclical", "bn-vae", "aggressive"],
)
def test_total_bits_per_char_stays_the_true_bound_under_every_remedy(remedy):
    """A remedy changes the training objective, never what is reported: valid kl_bpc is the
    closed-form KL of the posterior (computed here by hand) and total_bpc = rec + KL, the
    bound at weight 1, with no floor and no annealing weight."""
    tr = Trainer(tiny("lstm", steps=16, eval_every=4, **remedy))
    for _ in range(4):
        tr.train_step()
    m = tr.report().metrics
    cfg = tr.config
    with torch.no_grad():
        tr.model.eval()
        per_batch = []
        for x in tr.evaluator.validation_batches():
            raw, logvar = tr.model.posterior(x)
            mu = tr.model.normalize_mean(raw)
            nats = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # per fragment
            per_batch.append(nats.mean().item())
    want = sum(per_batch) / len(per_batch) / (cfg.length * math.log(2))
    assert m["valid/kl_bpc"] == pytest.approx(want, rel=1e-5), (remedy, m["valid/kl_bpc"], want)
    assert m["valid/total_bpc"] == pytest.approx(m["valid/rec_bpc"] + m["valid/kl_bpc"], rel=1e-9)
    assert m["valid/kl_bpc"] < 1.0  # far below what a floored or reweighted term would give

"""The objective's math: closed-form KL, annealing schedule, bits per character, masks."""

import math

import pytest
import torch

from textvae_core import (
    ConfigError,
    KLSchedule,
    bits_per_char,
    gaussian_kl,
    make_config,
    sequence_nll,
)
from textvae_core.config import parse_assignments
from textvae_core.diagnostics import active_units, derangement, mutual_information


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, generator=g)
    logvar = torch.randn(3, 5, generator=g) * 0.5
    n = 400_000
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn(n, 3, 5, generator=g)
    log_q = (-0.5 * ((z - mu) / std) ** 2 - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    mc = (log_q - log_p).mean(0)
    assert torch.allclose(gaussian_kl(mu, logvar), mc, atol=0.03), (gaussian_kl(mu, logvar), mc)
    assert gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_kl_weight_schedule_values():
    cfg = make_config("hybrid-lstm", "ptb")  # start 1000, end 8000, eps 0.001
    assert KLSchedule.of(cfg).weight_at(0) == pytest.approx(0.001)
    assert KLSchedule.of(cfg).weight_at(1000) == pytest.approx(0.001)
    assert KLSchedule.of(cfg).weight_at(4500) == pytest.approx(0.5 + 0.001)
    assert KLSchedule.of(cfg).weight_at(8000) == pytest.approx(1.0)
    assert KLSchedule.of(cfg).weight_at(50_000) == pytest.approx(1.0)
    lstm = make_config("lstm", "ptb")  # start 10000, end 17000
    assert KLSchedule.of(lstm).weight_at(13_500) == pytest.approx(0.501)
    assert KLSchedule.of(make_config("hybrid-lstm", "ptb", {"anneal": "off"})).weight_at(0) == 1.0
    assert KLSchedule.of(make_config("conv", "ptb", {"kl": "off"})).weight_at(9000) == 0.0


def test_bits_per_char_by_hand():
    # Uniform over 4 symbols costs exactly 2 bits per character.
    logits = torch.zeros(2, 5, 4)
    targets = torch.randint(1, 4, (2, 5))  # id 0 is PAD, never scored
    nats = sequence_nll(logits, targets)
    assert torch.allclose(nats, torch.full((2,), 5 * math.log(4)))
    targets[1, 3:] = 0  # a sentence of 3 tokens padded to 5: only its 3 are scored
    assert torch.allclose(sequence_nll(logits, targets), torch.tensor([5.0, 3.0]) * math.log(4))
    assert bits_per_char(nats[0].item(), 5) == pytest.approx(2.0)
    assert bits_per_char(10 * math.log(2), 10) == pytest.approx(1.0)


def test_sequence_nll_ignores_padding_positions():
    logits = torch.randn(2, 8, 6)
    targets = torch.randint(0, 6, (2, 5))
    padded_garbage = logits.clone()
    padded_garbage[:, 5:] = 1e4
    assert torch.equal(sequence_nll(logits, targets), sequence_nll(padded_garbage, targets))


def test_active_units_and_mutual_information():
    g = torch.Generator().manual_seed(0)
    informative = torch.randn(512, 4, generator=g) * 2
    collapsed = torch.zeros(512, 4)
    logvar = torch.full((512, 4), -4.0)
    assert active_units(torch.cat([informative, collapsed], 1)) == 4
    mi_info = mutual_information(informative, logvar, g)
    mi_none = mutual_information(collapsed, torch.zeros(512, 4), g)
    assert mi_info > 3.0 and abs(mi_none) < 0.1, (mi_info, mi_none)
    assert mi_info <= math.log(512) + 1e-6  # the estimate is capped by log N


def test_derangement_moves_every_index():
    for n in (2, 3, 64):
        p = derangement(n)
        assert sorted(p.tolist()) == list(range(n)) and not (p == torch.arange(n)).any()


def test_z_gain_is_zero_when_the_decoder_ignores_z():
    """An LSTM VAE whose initial state does not depend on z (to_state zeroed): z gain 0."""
    from textvae_core import build_model, fit
    from textvae_core.diagnostics import z_gain

    cfg = make_config("lstm", "tiny", {"length": 16})
    net = build_model(cfg, 54).eval()
    torch.nn.init.zeros_(net.to_state.weight)
    torch.nn.init.zeros_(net.to_state.bias)
    x = torch.randint(4, 54, (8, 16), generator=torch.Generator().manual_seed(0))
    mu, logvar = net.encode(x)
    z = net.reparameterize(mu, logvar)
    assert float(z.detach().std(0).mean()) > 0.1  # z itself varies from fragment to fragment
    gain = z_gain(net, x, z, net.decode(z, x)[0])
    assert abs(float(gain)) < 1e-5, gain

    # The conv VAE trained as an autoencoder (KL weight 0) has to read z: clearly positive.
    trainer = fit(
        make_config(
            "conv",
            "tiny",
            dict(
                corpus="synthetic",
                steps=300,
                eval_every=300,
                iw_samples=0,
                threads=1,
                seed=0,
                kl=False,
            ),
        )
    )
    assert trainer.history[-1].metrics["valid/z_gain_bpc"] > 0.3, trainer.history[-1].metrics


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"dropout": 1.5}, "dropout"),
        ({"depth": 0}, "depth"),
        ({"length": 4}, "length"),
        ({"lr": 0}, "lr"),
    ],
)
def test_bad_config_values_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        make_config("hybrid-bytenet", "ptb", bad)


def test_unknown_model_and_key_and_bad_value():
    with pytest.raises(ConfigError, match="expected one of conv, hybrid-lstm"):
        make_config("transformer")
    with pytest.raises(ConfigError, match="unknown key 'alhpa'"):
        parse_assignments(["alhpa=0.1"])
    with pytest.raises(ConfigError, match="anneal='maybe'.*on/off"):
        parse_assignments(["anneal=maybe"])
    assert parse_assignments(["anneal=off", "length=30", "alpha=0.3", "channels=64,128"]) == {
        "anneal": False,
        "length": 30,
        "alpha": 0.3,
        "channels": (64, 128),
    }


def test_core_imports_no_platform_packages():
    """textvae_core is pure PyTorch: importing it loads none of ray, optuna, mlflow, click."""
    import subprocess
    import sys

    code = (
        "import sys, textvae_core, textvae_core.bench, textvae_core.sampling; "
        "print(sorted(m for m in ('ray', 'optuna', 'mlflow', 'click') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out

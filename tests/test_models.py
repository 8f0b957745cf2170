"""Shapes, causality and the exact ByteNet receptive field of the four models."""

import pytest
import torch

from textvae_core import MODELS, build_model, make_config
from textvae_core.tokens import DUMMY, N_RESERVED

V = 54  # PTB: 50 characters + 4 reserved ids


def tiny(model, **overrides):
    return make_config(model, "tiny", overrides)


def random_ids(batch, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(N_RESERVED, V, (batch, length), generator=g)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("length", [8, 10, 12, 30, 52, 56, 60, 256])  # 8 and 256: the bounds
def test_output_shapes_and_dtypes(model, length):
    cfg = tiny(model, length=length)
    net = build_model(cfg, V)
    x = random_ids(3, length)
    out = net(x, torch.Generator().manual_seed(0))
    assert out.logits.shape == (3, length, V) and out.logits.dtype == torch.float32
    assert out.mu.shape == out.logvar.shape == (3, cfg.latent)
    if model.startswith("hybrid"):
        assert out.aux_logits.shape == (3, length, V)
    else:
        assert out.aux_logits is None
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("model", ["hybrid-lstm", "hybrid-bytenet", "lstm"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_decoder_is_causal_given_z(model, train_mode):
    cfg = tiny(model, length=24, depth=3, dropout=0.0)
    net = build_model(cfg, V).train(train_mode)
    x = random_ids(4, 24)
    z = torch.randn(4, cfg.latent, generator=torch.Generator().manual_seed(1))
    base, _ = net.decode(z, x)
    for t in (0, 5, 17, 23):
        changed = x.clone()
        changed[:, t:] = random_ids(4, 24 - t, seed=t + 100)
        logits, _ = net.decode(z, changed)
        # logits at position t predict x_t from x_<t: they must not see x_t or later.
        assert torch.equal(logits[:, : t + 1], base[:, : t + 1]), (
            f"leak from x[{t}:] into positions <= {t}"
        )
        if t + 1 < 24:
            assert not torch.allclose(logits[:, t + 1 :], base[:, t + 1 :]), (
                "decoder ignores its history"
            )


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_bytenet_receptive_field_is_depth_plus_one_characters(depth):
    L, t = 32, 20
    cfg = tiny("hybrid-bytenet", length=L, depth=depth)
    net = build_model(cfg, V).eval()
    x = random_ids(2, L)
    z = torch.randn(2, cfg.latent)
    base, _ = net.decode(z, x)

    def logits_at_t_after_changing(pos):
        changed = x.clone()
        changed[:, pos] = N_RESERVED + (changed[:, pos] - N_RESERVED + 7) % (V - N_RESERVED)
        return net.decode(z, changed)[0][:, t]

    for pos in range(t - depth - 1, t):  # the N+1 characters x[t-N-1 .. t-1]
        assert not torch.allclose(logits_at_t_after_changing(pos), base[:, t]), (
            f"x[{pos}] should matter"
        )
    assert torch.equal(logits_at_t_after_changing(t - depth - 2), base[:, t]), (
        "x[t-N-2] must not matter"
    )


def test_conv_model_is_historyless():
    cfg = tiny("conv", length=20)
    net = build_model(cfg, V).eval()
    x = random_ids(2, 20)
    z = torch.randn(2, cfg.latent)
    a, _ = net.decode(z, x)
    b, _ = net.decode(z, random_ids(2, 20, seed=5))
    assert torch.equal(a, b)


def test_lstm_with_full_dropout_is_historyless_in_eval_too():
    cfg = tiny("lstm", length=20, dropout=1.0)
    net = build_model(cfg, V).eval()
    x = random_ids(2, 20)
    assert (net.decoder_inputs(x) == DUMMY).all()
    z = torch.randn(2, cfg.latent)
    assert torch.equal(net.decode(z, x)[0], net.decode(z, random_ids(2, 20, seed=9))[0])


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_input_dropout_replaces_about_p_of_tokens(p):
    net = build_model(tiny("hybrid-lstm", dropout=p), V).train()
    x = random_ids(64, 52)
    prev = net.decoder_inputs(x, torch.Generator().manual_seed(0))
    frac = (prev == DUMMY).float().mean().item()
    assert abs(frac - p) < 0.03, frac
    assert (net.eval().decoder_inputs(x) != DUMMY).all(), "dropout must be off in evaluation"


def test_layernorm_lstm_option_matches_shapes_and_is_causal():
    cfg = tiny("hybrid-lstm", lstm_cell="layernorm", length=16)
    net = build_model(cfg, V).eval()
    x = random_ids(2, 16)
    z = torch.randn(2, cfg.latent)
    base, _ = net.decode(z, x)
    changed = x.clone()
    changed[:, 8:] = random_ids(2, 8, seed=3)
    assert torch.equal(net.decode(z, changed)[0][:, :9], base[:, :9])


@pytest.mark.parametrize("model", MODELS)
def test_generate_emits_only_characters(model):
    cfg = tiny(model, length=12)
    net = build_model(cfg, V).eval()
    z = torch.randn(3, cfg.latent)
    out = {}
    for temperature, seed in ((0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)):
        ids = net.generate(z, 12, temperature, torch.Generator().manual_seed(seed))
        assert ids.shape == (3, 12)
        assert (ids >= N_RESERVED).all()
        out[temperature, seed] = ids
    # greedy ignores the generator; sampling at temperature 1 draws from it
    assert torch.equal(out[0.0, 0], out[0.0, 1])
    assert not torch.equal(out[1.0, 0], out[1.0, 1])


def test_stepwise_generation_matches_teacher_forcing():
    """Greedy stepwise decoding must equal argmax of the teacher-forced logits on its output
    (the LSTM VAE also with z at every step, with input dropout and historyless)."""
    for model, cell, extra in (
        ("hybrid-lstm", "fused", {}),
        ("lstm", "fused", {}),
        ("hybrid-lstm", "layernorm", {}),
        ("lstm", "layernorm", {}),
        *(
            ("lstm", cell, {"z_every_step": True, "dropout": p})
            for cell in ("fused", "layernorm")
            for p in (0.0, 0.2, 1.0)
        ),
    ):
        cfg = tiny(model, length=12, lstm_cell=cell, **extra)
        net = build_model(cfg, V).eval()
        z = torch.randn(2, cfg.latent)
        ids = net.generate(z, 12)
        logits, _ = net.decode(z, ids)
        logits[:, :, :N_RESERVED] = -float("inf")
        assert torch.equal(logits.argmax(-1), ids), (model, cell, extra)


@pytest.mark.parametrize("cell", ["fused", "layernorm"])
@pytest.mark.parametrize("dropout", [0.2, 1.0])
def test_z_every_step_reaches_every_position_without_the_initial_state(cell, dropout):
    """With the initial-state path cut (to_state zeroed: h0 = c0 = 0 for every z), the decoder
    still reads z at every position when z_every_step is on, and not at all when it is off."""
    L = 40
    x = random_ids(3, L)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    other = z + 0.5 * torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    for every_step in (True, False):
        cfg = tiny("lstm", length=L, lstm_cell=cell, dropout=dropout, z_every_step=every_step)
        net = build_model(cfg, V).eval()
        with torch.no_grad():
            net.to_state.weight.zero_()
            net.to_state.bias.zero_()
        a, _ = net.decode(z, x)
        b, _ = net.decode(other, x)
        moved = (a - b).abs().amax(-1)  # (B, L): the largest logit change at each position
        if every_step:
            assert (moved > 1e-4).all(), moved.min()
        else:
            assert torch.equal(a, b)


def test_z_every_step_is_for_the_lstm_vae_only():
    from textvae_core import ConfigError

    assert tiny("lstm", z_every_step=True).z_every_step
    for model in ("conv", "hybrid-lstm", "hybrid-bytenet"):
        with pytest.raises(ConfigError, match="^z_every_step=True is not allowed: expected False"):
            tiny(model, z_every_step=True)


def test_paper_sizes():
    """Released PTB defaults and the tweets setup (~10.8M parameters, Sec 4.3)."""
    from textvae_core import count_parameters

    tweets = build_model(make_config("hybrid-lstm", "tweets"), 100)
    assert 9.5e6 < count_parameters(tweets) < 12e6, count_parameters(tweets)
    ptb = make_config("hybrid-lstm", "ptb")
    assert (ptb.latent, ptb.hidden, ptb.conv_channels, ptb.deconv_out) == (50, 500, (128, 256), 200)
    assert make_config("lstm", "ptb").grad_clip == 100.0


@pytest.mark.parametrize("length", [7, 257])
def test_lengths_outside_8_to_256_are_refused(length):
    from textvae_core.config import ConfigError

    with pytest.raises(ConfigError, match=f"length={length} is not allowed: expected an integer"):
        tiny("conv", length=length)

"""Preset building blocks shared by the study files (plain data, no logic beyond merging).

KL ramps are per model and live here only, as each preset's per-model overrides; a study
file never repeats them. The paper's heuristic places a ramp: start once the model's
reconstruction, active units and MI have levelled off with the KL weight at ~0, and last
at least 20% of that time.

`cpu` ramps, measured on real PTB at the cpu sizes below (batch 32, z=32, hidden 256),
KL weight held at its floor 1e-3 for the whole run, valid metrics every 250 steps
(`python` loop over `fit`, 1 thread each; "levelled" = valid rec improves < 0.2 bit/char
over the next 500 steps and active units and MI are within 10% of their later values).
With the paper's LayerNorm LSTM (the default cell; measured 2026-12-06):

    hybrid-lstm (alpha=0.2, L=52)   AU 32/32 and MI at its cap (4.85) from step 250;
                                    rec 2.30 (250) 1.61 (500) 1.18 (1000) 1.03 (1250) 0.96 (1500)
                                    0.91 (1750) 0.79 (2000): levelled at 1250
    lstm (p=0.2, L=12)              AU 32/32 from step 250; MI 3.30 (250) 4.23 (500) 4.80 (1000),
                                    4.85 from 1750: levelled at 1000 by AU and MI; rec 3.05 (250)
                                    2.31 (1000) 1.64 (2000) 0.94 (3000) keeps falling ~0.2 bit/char
                                    per 250 steps (an autoencoder spending ~13 bits/char of KL)
    lstm (p=0.2, L=36)              AU 0, MI <= 0.09 to step 750; on at 1000 (AU 30, MI 0.55),
                                    MI 0.61 from 1250; rec 2.50 (1000) 2.41 (1250) 2.34 (1500)
    lstm (p=0.2, L=60)              AU 0, MI <= 0.06 up to step 1000: later still at long fragments

so hybrid-lstm ramps 1250 -> 2250, the LSTM VAE keeps 2250 -> 3000 (it has levelled by AU and MI
before 2250 at L=12 and L=36; rec never levels at the KL floor), and the conv VAE and
hybrid-bytenet keep 1000 -> 2000 (measured before, without an LSTM). The fused cell's measurement
(before 2026-12-06) had the LSTM VAE switch on only at ~1500 at L=12 and the fused hybrid-lstm
level at 1000. The `paper` ramps are the released ones (hybrids 1000 -> 8000, LSTM VAE 10k -> 17k).
"""

from __future__ import annotations

from typing import Any, Mapping

from textvae_core.config import MODELS

from .spec import Preset


def _ramps(hybrid: tuple[int, int], lstm: tuple[int, int]) -> dict[str, dict[str, int]]:
    return {
        m: dict(zip(("anneal_start", "anneal_end"), lstm if m == "lstm" else hybrid))
        for m in MODELS
    }


SMOKE_RAMPS = _ramps(hybrid=(5, 25), lstm=(10, 30))
CPU_RAMPS = _ramps(hybrid=(1000, 2000), lstm=(2250, 3000))
CPU_RAMPS["hybrid-lstm"] = dict(anneal_start=1250, anneal_end=2250)  # its LSTM head levels later
PAPER_RAMPS = _ramps(hybrid=(1000, 8000), lstm=(10_000, 17_000))

# Smoke: tiny models on the built-in synthetic corpus, a few seconds per trial on a laptop CPU.
SMOKE = dict(steps=40, eval_every=20, eval_batches=2, batch_size=16, iw_samples=4)

# Paper: the released settings (100 x 1000 iterations, batch 64; hybrids decay lr after 20k).
# Every preset keeps TrainConfig's default cell, the paper's LayerNorm LSTM.
PAPER = dict(steps=100_000, eval_every=1000, eval_batches=10, iw_samples=100)

# CPU: reduced widths for a 2-core machine on real PTB, three seeds per grid point.
CPU_SIZES = dict(conv_channels=(64, 128), deconv_out=128, hidden=256, bytenet_width=128, latent=32)
CPU = dict(batch_size=32, eval_every=250, eval_batches=4, iw_samples=20, lr_decay=1.0, **CPU_SIZES)
CPU_SEEDS = 3


def _merge(
    base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Per-model overrides: the preset's ramps, then a study's own per-model values."""
    out = {m: dict(v) for m, v in base.items()}
    for model, values in (extra or {}).items():
        out.setdefault(model, {}).update(values)
    return out


def smoke(
    grid: Mapping[str, tuple] | None = None,
    cost: str = "",
    num_samples: int = 1,
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **overrides: Any,
) -> Preset:
    return Preset(
        size="tiny",
        corpus="synthetic",
        overrides={**SMOKE, **overrides},
        grid=grid,
        cost=cost,
        model_overrides=_merge(SMOKE_RAMPS, model_overrides),
        num_samples=num_samples,
    )


def cpu(
    steps: int,
    grid: Mapping[str, tuple] | None = None,
    cost: str = "",
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    num_samples: int = CPU_SEEDS,
    **overrides: Any,
) -> Preset:
    """Every model trains `steps` steps; grid studies repeat each point with 3 seeds."""
    return Preset(
        size="ptb",
        corpus="ptb",
        overrides={**CPU, "steps": steps, **overrides},
        grid=grid,
        cost=cost,
        model_overrides=_merge(CPU_RAMPS, model_overrides),
        num_samples=num_samples,
    )


def paper(
    cost: str = "",
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    num_samples: int = 1,
    **overrides: Any,
) -> Preset:
    return Preset(
        size="ptb",
        corpus="ptb",
        overrides={**PAPER, **overrides},
        cost=cost,
        model_overrides=_merge(PAPER_RAMPS, model_overrides),
        num_samples=num_samples,
    )

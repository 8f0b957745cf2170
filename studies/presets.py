"""Preset building blocks shared by the study files (plain data, no logic beyond merging).

KL ramps are per model and live here only, as each preset's per-model overrides; a study
file never repeats them. The paper's heuristic places a ramp: start once the model's
reconstruction, active units and MI have levelled off with the KL weight at ~0, and last
at least 20% of that time.

`cpu` ramps, measured on real PTB at the cpu sizes below (batch 32, z=32, hidden 256),
KL weight held at its floor 1e-3 for the whole run, valid metrics every 250 steps
(`python` loop over `fit`, 1 thread each; "levelled" = valid rec improves < 0.2 bit/char
over the next 500 steps and active units and MI are within 10% of their later values):

    hybrid-lstm (alpha=0.2, L=52)   AU 32/32 and MI at its cap (4.85) from step 250;
                                    rec 2.17 (250) 1.40 (1000) 1.20 (1500) 0.89 (2500): levelled at 1000
    hybrid-bytenet (alpha=0.2, L=56, depth 6)
                                    AU 32/32 and MI at its cap from step 250;
                                    rec 2.17 (250) 1.09 (750) 0.94 (1250) 0.67 (2500): levelled at 750
    lstm (p=0.2, L=12)              AU 0 and MI ~0 until step 1250; the encoder switches on at ~1500
                                    (27 AU, MI 1.62), MI 3.80 (2000) 3.84 (2250) 4.23 (4000);
                                    rec 2.62 (2000) 2.55 (2250) 2.51 (2750): levelled at 2250
    lstm (p=0.2, L=60)              AU 0, MI <= 0.04 up to step 1500: later still at long fragments

so both hybrids (and the conv VAE) ramp 1000 -> 2000 and the LSTM VAE 2250 -> 3000. The
`paper` ramps are the released ones (hybrids 1000 -> 8000, LSTM VAE 10k -> 17k).
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

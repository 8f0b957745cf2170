"""Preset building blocks shared by the study files (plain data, no logic beyond merging)."""

from __future__ import annotations

from typing import Any, Mapping

from .spec import Preset

# Smoke: tiny models on the built-in synthetic corpus, a few seconds per trial on a laptop CPU.
SMOKE = dict(steps=40, eval_every=20, eval_batches=2, batch_size=16, anneal_start=5, anneal_end=25,
             iw_samples=4)

# Paper: the released settings (100 x 1000 iterations, batch 64; hybrids decay lr after 20k).
PAPER = dict(steps=100_000, eval_every=1000, eval_batches=10, iw_samples=100)

# CPU: reduced widths for a 2-core machine on real PTB. The annealing ramp follows the
# paper's heuristic scaled to the step count: start once the unregularised model has
# roughly converged, and last at least 20% of that.
CPU_SIZES = dict(conv_channels=(64, 128), deconv_out=128, hidden=256, bytenet_width=128, latent=32)
CPU = dict(batch_size=32, eval_every=250, eval_batches=4, iw_samples=20, lr_decay=1.0, **CPU_SIZES)


def smoke(grid: Mapping[str, tuple] | None = None, cost: str = "", num_samples: int = 1,
          **overrides: Any) -> Preset:
    return Preset(size="tiny", corpus="synthetic", overrides={**SMOKE, **overrides}, grid=grid, cost=cost,
                  num_samples=num_samples)


def cpu(steps: int, anneal: tuple[int, int], grid: Mapping[str, tuple] | None = None, cost: str = "",
        model_overrides: Mapping[str, Mapping[str, Any]] | None = None, num_samples: int = 1,
        **overrides: Any) -> Preset:
    values = {**CPU, "steps": steps, "anneal_start": anneal[0], "anneal_end": anneal[1], **overrides}
    return Preset(size="ptb", corpus="ptb", overrides=values, grid=grid, cost=cost,
                  model_overrides=model_overrides or {}, num_samples=num_samples)


def paper(cost: str = "", model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
          num_samples: int = 1, **overrides: Any) -> Preset:
    return Preset(size="ptb", corpus="ptb", overrides={**PAPER, **overrides}, cost=cost,
                  model_overrides=model_overrides or {}, num_samples=num_samples)

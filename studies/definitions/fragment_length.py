"""fragment-length: Fig 4 of Semeniuta et al. (2017). The hybrid VAE (alpha=0.2) against
the LSTM VAE with input dropout p in {0.2, 0.5}, as fragments grow from 12 to 60
characters: the hybrid keeps its KL share, the LSTM VAE's KL falls towards 0.

    vaestudy run fragment-length --preset smoke   # 6 trials, ~45 s on 2 CPU cores
    vaestudy run fragment-length --preset cpu     # 27 trials (L in {12, 36, 60} x 3 seeds),
                                                  # 4000 steps each
    vaestudy run fragment-length --preset paper   # 15 trials x 100k steps: GPUs

Ramps (studies/presets.py, measured with the KL weight at ~0 and the paper's LayerNorm
cell): hybrid-lstm 1250 -> 2250, LSTM VAE 2250 -> 3000 (its encoder is on from step 250 at
L=12 and levels by AU and MI at 1000; at L=36 it switches on at ~1000), so both train 4000
steps. The cpu grid keeps L=12 (the controls), 36, and 60 (>= 48, the claims).
"""

from studies.presets import cpu, paper, smoke
from studies.results.checks import not_collapsed, ratio_between
from studies.spec import Claim, Control, Figure, Study

VARIANTS = ("hybrid a=0.2", "lstm p=0.2", "lstm p=0.5")


def _lstm_vanishes(p: str) -> Claim:
    where = {"variant": f"lstm p={p}"}
    return Claim(
        f"lstm-p{p}-kl-share-vanishes",
        f"LSTM VAE (p={p}): KL share at every L >= 48 < 25% of its share at L=12",
        ratio_between,
        dict(where=where, x="length", lo=12, hi_from=48, y="kl_share", below=0.25),
        controls=(
            Control(
                f"LSTM VAE (p={p}) is not collapsed at L=12",
                not_collapsed,
                dict(where={**where, "length": 12}),
            ),
        ),
    )


STUDY = Study(
    name="fragment-length",
    title="Fragment length vs KL: hybrid (alpha=0.2) vs LSTM VAE (p=0.2, 0.5)",
    reproduces="Fig 4",
    variants={
        "hybrid a=0.2": dict(model="hybrid-lstm", alpha=0.2),
        "lstm p=0.2": dict(model="lstm", dropout=0.2),
        "lstm p=0.5": dict(model="lstm", dropout=0.5),
    },
    grid={"variant": VARIANTS, "length": (12, 24, 36, 48, 60)},
    figure=Figure("lines", x="length", series="variant"),
    presets={
        "smoke": smoke(grid={"variant": VARIANTS, "length": (12, 24)}, cost="~45 s, 6 trials"),
        "cpu": cpu(
            steps=4000,
            grid={"variant": VARIANTS, "length": (12, 36, 60)},
            cost="27 trials; ~98 min on 2 cores with the LayerNorm cell (30 before a stop + 68.3 "
            "resumed, tests sharing the cores most of it; the fused cell's run: 77.7 min)",
        ),
        "paper": paper(cost="15 trials x 100k steps"),
    },
    claims=(
        _lstm_vanishes("0.2"),
        _lstm_vanishes("0.5"),
        Claim(
            "hybrid-kl-share-holds",
            "Hybrid (alpha=0.2): KL share at L=60 >= 50% of its share at L=12",
            ratio_between,
            dict(
                where={"variant": "hybrid a=0.2"},
                x="length",
                lo=12,
                hi=60,
                y="kl_share",
                at_least=0.5,
            ),
            controls=(
                Control(
                    "the hybrid is not collapsed at L=12",
                    not_collapsed,
                    dict(where={"variant": "hybrid a=0.2", "length": 12}),
                ),
            ),
        ),
    ),
)

"""dropout: Table 2 of Semeniuta et al. (2017), on PTB characters. The LSTM VAE with input
dropout p in {0.2, 0.5, 0.8} against the hybrid VAE with alpha=0.2: how much information
each puts in z (KL) and at what reconstruction cost.

    vaestudy run dropout --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run dropout --preset cpu     # 4 trials on real PTB, 9 min on 2 cores
    vaestudy run dropout --preset paper   # 4 trials x 100k steps: GPUs
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Claim, Study

STUDY = Study(
    name="dropout",
    title="Input dropout of the LSTM VAE vs the hybrid VAE (alpha=0.2)",
    reproduces="Table 2",
    base=dict(length=60),
    variants={
        "lstm p=0.2": dict(model="lstm", dropout=0.2),
        "lstm p=0.5": dict(model="lstm", dropout=0.5),
        "lstm p=0.8": dict(model="lstm", dropout=0.8),
        "hybrid a=0.2": dict(model="hybrid-lstm", alpha=0.2),
    },
    grid={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8", "hybrid a=0.2")},
    figure="variant|",
    presets={
        "smoke": smoke(cost="~30 s, 4 trials"),
        "cpu": cpu(steps=3000, anneal=(600, 1800), cost="~9 min on 2 cores, 4 trials"),
        "paper": paper(cost="4 trials x 100k steps",
                       model_overrides={"lstm": dict(anneal_start=10_000, anneal_end=17_000)}),
    },
    claims=(
        Claim("hybrid-holds-more", "hybrid (alpha=0.2) kl_bpc > the largest lstm kl_bpc (p in 0.2, 0.5, 0.8)",
              "max_vs", dict(y="kl_bpc", subject={"variant": "hybrid a=0.2"},
                             others={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")})),
    ),
)

"""fragment-length: Fig 4 of Semeniuta et al. (2017). The hybrid VAE (alpha=0.2) against
the LSTM VAE with input dropout p in {0.2, 0.5}, as fragments grow from 12 to 60
characters: the hybrid keeps its KL share, the LSTM VAE's KL falls towards 0.

    vaestudy run fragment-length --preset smoke   # 6 trials, ~45 s on 2 CPU cores
    vaestudy run fragment-length --preset cpu     # 15 trials on real PTB, 12 min on 2 cores
    vaestudy run fragment-length --preset paper   # 15 trials x 100k steps: GPUs
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Claim, Study

STUDY = Study(
    name="fragment-length",
    title="Fragment length vs KL: hybrid (alpha=0.2) vs LSTM VAE (p=0.2, 0.5)",
    reproduces="Fig 4",
    variants={
        "hybrid a=0.2": dict(model="hybrid-lstm", alpha=0.2),
        "lstm p=0.2": dict(model="lstm", dropout=0.2),
        "lstm p=0.5": dict(model="lstm", dropout=0.5),
    },
    grid={"variant": ("hybrid a=0.2", "lstm p=0.2", "lstm p=0.5"), "length": (12, 24, 36, 48, 60)},
    figure="length|variant",
    presets={
        "smoke": smoke(grid={"variant": ("hybrid a=0.2", "lstm p=0.2", "lstm p=0.5"), "length": (12, 24)},
                       cost="~45 s, 6 trials"),
        "cpu": cpu(steps=1500, anneal=(300, 900), cost="~12 min on 2 cores, 15 trials"),
        "paper": paper(cost="15 trials x 100k steps",
                       model_overrides={"lstm": dict(anneal_start=10_000, anneal_end=17_000)}),
    },
    claims=(
        Claim("lstm-kl-share-vanishes", "LSTM VAE (p=0.2): KL share at L=60 < 25% of its share at L=12",
              "ratio_between", dict(where={"variant": "lstm p=0.2"}, x="length", lo=12, hi=60,
                                    y="kl_share", below=0.25)),
        Claim("hybrid-kl-share-holds", "Hybrid (alpha=0.2): KL share at L=60 >= 50% of its share at L=12",
              "ratio_between", dict(where={"variant": "hybrid a=0.2"}, x="length", lo=12, hi=60,
                                    y="kl_share", at_least=0.5)),
    ),
)

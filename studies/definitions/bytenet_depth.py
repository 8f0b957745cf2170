"""bytenet-depth: Fig 6 of Semeniuta et al. (2017). Hybrid VAE with a ByteNet head at
L=56: decoder depth 1..10 (receptive field depth + 1) x alpha in {0, 0.2, 0.5}. Without the
auxiliary term the KL collapses once the decoder sees more than 3 characters.

    vaestudy run bytenet-depth --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run bytenet-depth --preset cpu     # 15 trials on real PTB (depths 1,3,5,7,9), 18 min on 2 cores
    vaestudy run bytenet-depth --preset paper   # 30 trials x 100k steps: GPUs
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Claim, Study

STUDY = Study(
    name="bytenet-depth",
    title="ByteNet decoder depth vs KL for alpha in {0, 0.2, 0.5} (L=56)",
    reproduces="Fig 6",
    model="hybrid-bytenet",
    base=dict(length=56),
    grid={"depth": tuple(range(1, 11)), "alpha": (0.0, 0.2, 0.5)},
    figure="depth|alpha",
    presets={
        "smoke": smoke(grid={"depth": (1, 4), "alpha": (0.0, 0.5)}, cost="~30 s, 4 trials"),
        "cpu": cpu(steps=1500, anneal=(300, 900), grid={"depth": (1, 3, 5, 7, 9), "alpha": (0.0, 0.2, 0.5)},
                   cost="~18 min on 2 cores, 15 trials"),
        "paper": paper(cost="30 trials x 100k steps"),
    },
    claims=(
        Claim("collapse-without-aux", "alpha=0 and depth >= 3: kl_bpc < 0.02", "all_below",
              dict(where={"alpha": 0.0}, x="depth", x_min=3, y="kl_bpc", threshold=0.02)),
        Claim("aux-keeps-kl", "alpha in {0.2, 0.5}: kl_bpc >= 0.05 at every depth", "all_above",
              dict(where={"alpha": (0.2, 0.5)}, y="kl_bpc", threshold=0.05)),
        Claim("kl-grows-with-alpha", "mean kl_bpc at alpha=0.5 > at alpha=0.2", "mean_greater",
              dict(group="alpha", y="kl_bpc", greater=0.5, lesser=0.2)),
    ),
)

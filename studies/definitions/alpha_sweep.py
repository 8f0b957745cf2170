"""alpha-sweep: Fig 5 of Semeniuta et al. (2017). Hybrid VAE with an LSTM head at L=52:
the weight alpha of the auxiliary reconstruction term against KL and the bound, with and
without KL annealing.

    vaestudy run alpha-sweep --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run alpha-sweep --preset cpu     # 20 trials on real PTB, 18 min on 2 cores (measured)
    vaestudy run alpha-sweep --preset paper   # 20 trials x 100k steps: GPUs
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Claim, Study

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

STUDY = Study(
    name="alpha-sweep",
    title="Auxiliary weight alpha vs KL and bound (hybrid + LSTM, L=52)",
    reproduces="Fig 5",
    model="hybrid-lstm",
    base=dict(length=52),
    grid={"alpha": ALPHAS, "anneal": (True, False)},
    figure="alpha|anneal",
    presets={
        "smoke": smoke(grid={"alpha": (0.2, 0.8), "anneal": (True, False)}, cost="~30 s, 4 trials"),
        "cpu": cpu(steps=1500, anneal=(300, 900), cost="~18 min on 2 cores, 20 trials"),
        "paper": paper(cost="20 trials x 100k steps; ~1.5 h each on a quarter of an A100-class GPU"),
    },
    claims=(
        Claim("kl-grows-with-alpha", "KL grows with alpha, with and without annealing "
              "(Spearman(alpha, kl_bpc) >= 0.8 in each)", "spearman_by_group",
              dict(x="alpha", y="kl_bpc", group="anneal", threshold=0.8)),
        Claim("annealing-helps-at-small-alpha", "At alpha=0.2, KL with annealing >= without",
              "compare_at", dict(at={"alpha": 0.2}, y="kl_bpc", group="anneal", greater=True, lesser=False)),
    ),
)

"""bytenet-depth: Fig 6 of Semeniuta et al. (2017). Hybrid VAE with a ByteNet head at
L=56: decoder depth 1..10 (receptive field depth + 1) x alpha in {0, 0.2, 0.5}. Without the
auxiliary term the KL collapses once the decoder sees more than 3 characters.

    vaestudy run bytenet-depth --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run bytenet-depth --preset cpu     # 36 trials (depths 1, 2, 3, 6 x 3 alphas
                                                # x 3 seeds), 3000 steps
    vaestudy run bytenet-depth --preset paper   # 30 trials x 100k steps: GPUs

Ramp (studies/presets.py, measured with the KL weight at ~0): hybrid-bytenet's rec levels
off at step ~750 at depth 6 (AU and MI at once); it anneals 1000 -> 2000. The cpu
grid has depths 1 and 2 (receptive field <= 3: the control) and 3 and 6 (the collapse).

Measured (cpu, 3 seeds, host matmul 156.5 GFLOP/s at 1 thread): 91.9 min wall with the test
suite sharing the 2 cores for most of it; trial walls 118-233 s at depth 1, 166-329 at 2,
204-390 at 3, 355-628 at 6, so the fastest per depth put a run alone at ~63 min.
"""

from studies.presets import cpu, paper, smoke
from studies.results.checks import all_above, all_below, greater_at_every
from studies.spec import Claim, Control, Figure, Study

STUDY = Study(
    name="bytenet-depth",
    title="ByteNet decoder depth vs KL for alpha in {0, 0.2, 0.5} (L=56)",
    reproduces="Fig 6",
    model="hybrid-bytenet",
    base=dict(length=56),
    grid={"depth": tuple(range(1, 11)), "alpha": (0.0, 0.2, 0.5)},
    figure=Figure("lines", x="depth", series="alpha"),
    presets={
        "smoke": smoke(grid={"depth": (1, 4), "alpha": (0.0, 0.5)}, cost="~30 s, 4 trials"),
        "cpu": cpu(
            steps=3000,
            grid={"depth": (1, 2, 3, 6), "alpha": (0.0, 0.2, 0.5)},
            cost="91.9 min on 2 cores with tests sharing them (~63 min alone; matmul 156.5 GFLOP/s "
            "at 1 thread), 36 trials",
        ),
        "paper": paper(cost="30 trials x 100k steps"),
    },
    claims=(
        Claim(
            "collapse-without-aux",
            "alpha=0: kl_bpc < 0.02 at every depth >= 3",
            all_below,
            dict(where={"alpha": 0.0}, x="depth", x_min=3, y="kl_bpc", threshold=0.02),
            controls=(
                Control(
                    "alpha=0: kl_bpc >= 0.05 at every depth <= 2 (receptive field <= 3)",
                    all_above,
                    dict(where={"alpha": 0.0}, x="depth", x_max=2, y="kl_bpc", threshold=0.05),
                ),
            ),
        ),
        Claim(
            "aux-keeps-kl",
            "alpha in {0.2, 0.5}: kl_bpc >= 0.05 at every depth",
            all_above,
            dict(where={"alpha": (0.2, 0.5)}, y="kl_bpc", threshold=0.05),
        ),
        Claim(
            "kl-grows-with-alpha",
            "kl_bpc at alpha=0.5 > at alpha=0.2 at every depth",
            greater_at_every,
            dict(x="depth", y="kl_bpc", group="alpha", greater=0.5, lesser=0.2),
        ),
    ),
)

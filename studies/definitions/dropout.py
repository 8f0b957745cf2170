"""dropout: Table 2 of Semeniuta et al. (2017), on PTB characters. The LSTM VAE with input
dropout p in {0.2, 0.5, 0.8} against the hybrid VAE with alpha=0.2: how much information
each puts in z (KL) and at what reconstruction cost.

    vaestudy run dropout --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run dropout --preset cpu     # 12 trials (4 variants x 3 seeds) on real PTB,
                                          # 4000 steps each
    vaestudy run dropout --preset paper   # 4 trials x 100k steps: GPUs

L=12: the LSTM VAE must hold some KL for the comparison to mean anything (the control), and
Fig 4 places its collapse at long fragments (with the paper's LayerNorm cell and KL weight
~0 its encoder is on from step 250 at L=12, at ~1000 at L=36, and still off at 1000 at
L=60). Ramps (studies/presets.py): hybrid-lstm 1250 -> 2250, LSTM VAE 2250 -> 3000, so both
train 4000 steps.
"""

from studies.presets import cpu, paper, smoke
from studies.results.checks import increasing, max_vs, not_collapsed, within_of_best
from studies.spec import Claim, Control, Figure, Study

LSTMS = {"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8")}
HYBRID = {"variant": "hybrid a=0.2"}
ALIVE = Control(
    "at least one LSTM VAE is not collapsed", not_collapsed, dict(where=LSTMS, require="any")
)

STUDY = Study(
    name="dropout",
    title="Input dropout of the LSTM VAE vs the hybrid VAE (alpha=0.2, L=12)",
    reproduces="Table 2",
    base=dict(length=12),
    variants={
        "lstm p=0.2": dict(model="lstm", dropout=0.2),
        "lstm p=0.5": dict(model="lstm", dropout=0.5),
        "lstm p=0.8": dict(model="lstm", dropout=0.8),
        "hybrid a=0.2": dict(model="hybrid-lstm", alpha=0.2),
    },
    grid={"variant": ("lstm p=0.2", "lstm p=0.5", "lstm p=0.8", "hybrid a=0.2")},
    figure=Figure("bars", x="variant"),
    presets={
        "smoke": smoke(cost="~30 s, 4 trials"),
        "cpu": cpu(
            steps=4000,
            cost="12 trials; 47.6 min on 2 cores with the LayerNorm cell, tests sharing the cores "
            "all along (the fused cell's run: 13.3 min alone)",
        ),
        "paper": paper(cost="4 trials x 100k steps"),
    },
    claims=(
        Claim(
            "lstm-dropout-tradeoff",
            "The LSTM VAE's kl_bpc and rec_bpc both rise with p over {0.2, 0.5, 0.8}",
            increasing,
            dict(where=LSTMS, x="dropout", ys=("kl_bpc", "rec_bpc")),
            controls=(ALIVE,),
        ),
        Claim(
            "hybrid-holds-more",
            "hybrid (alpha=0.2) kl_bpc > the largest LSTM VAE kl_bpc (p in 0.2, 0.5, 0.8)",
            max_vs,
            dict(y="kl_bpc", subject=HYBRID, others=LSTMS),
            controls=(ALIVE,),
        ),
        Claim(
            "comparable-totals",
            "The hybrid's total_bpc is within 10% of the best LSTM VAE's",
            within_of_best,
            dict(y="total_bpc", subject=HYBRID, others=LSTMS, rel=0.1),
            controls=(ALIVE,),
        ),
    ),
)

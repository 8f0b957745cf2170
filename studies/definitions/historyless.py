"""historyless: Fig 3 of Semeniuta et al. (2017). Decoders that never see previous
characters, trained with no KL term (stochastic autoencoders): the conv VAE fits 10-50
character fragments almost at once; the LSTM VAE with input dropout 1 fails from 30 on.

    vaestudy run historyless --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run historyless --preset cpu     # 8 trials on real PTB, 7.5 min on 2 cores
    vaestudy run historyless --preset paper   # 8 trials x 100k steps: GPUs
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Claim, Study

STUDY = Study(
    name="historyless",
    title="Historyless decoders without a KL term: conv vs LSTM (p=1)",
    reproduces="Fig 3",
    metric="valid/rec_bpc",
    base=dict(kl=False),
    variants={
        "conv": dict(model="conv"),
        "lstm p=1": dict(model="lstm", dropout=1.0),
    },
    grid={"variant": ("conv", "lstm p=1"), "length": (10, 20, 30, 50)},
    figure="step|variant/length",
    presets={
        "smoke": smoke(grid={"variant": ("conv", "lstm p=1"), "length": (10, 30)}, cost="~30 s, 4 trials"),
        # conv at the paper's sizes (z=100): it is cheap (~100k chars/s on one core), and a
        # 32-d code cannot hold 50 characters without a KL term to pay for it either way.
        "cpu": cpu(steps=3000, anneal=(600, 1800), cost="~7.5 min on 2 cores, 8 trials",
                   model_overrides={"conv": dict(latent=100, conv_channels=(128, 256), deconv_out=200)}),
        "paper": paper(cost="8 trials x 100k steps"),
    },
    claims=(
        Claim("lstm-fails-long", "At L in {30, 50}: lstm (p=1) rec_bpc >= 2 x conv rec_bpc", "ratio_vs",
              dict(x="length", at=(30, 50), y="rec_bpc", numerator={"variant": "lstm p=1"},
                   denominator={"variant": "conv"}, at_least=2.0)),
        Claim("conv-fits-50", "conv rec_bpc at L=50 <= 1.0", "value_at",
              dict(where={"variant": "conv", "length": 50}, y="rec_bpc", at_most=1.0)),
    ),
)

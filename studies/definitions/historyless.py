"""historyless: Fig 3 of Semeniuta et al. (2017). Decoders that never see previous
characters, trained with no KL term (stochastic autoencoders): the conv VAE fits 10-50
character fragments almost at once; the LSTM VAE with input dropout 1 fails from 30 on.

    vaestudy run historyless --preset smoke   # 4 trials, ~30 s on 2 CPU cores
    vaestudy run historyless --preset cpu     # 24 trials (8 points x 3 seeds) on real PTB, 3000 steps each
    vaestudy run historyless --preset paper   # 8 trials x 100k steps: GPUs

Both models have z=100, as released, in every preset (the cpu conv also keeps the paper's
widths: it is cheap). No KL term, so the ramps of studies/presets.py play no part here.
"""

from studies.presets import cpu, paper, smoke
from studies.results.checks import all_below, below_by, difference_vs
from studies.spec import Claim, Control, Figure, Study

LSTM, CONV = {"variant": "lstm p=1"}, {"variant": "conv"}

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
    figure=Figure("curves", series="variant", panel="length"),
    presets={
        "smoke": smoke(
            grid={"variant": ("conv", "lstm p=1"), "length": (10, 30)}, cost="~30 s, 4 trials"
        ),
        "cpu": cpu(
            steps=3000,
            cost="27.9 min on 2 cores (measured; matmul 74.5 GFLOP/s at 1 thread), 24 trials",
            model_overrides={
                "conv": dict(latent=100, conv_channels=(128, 256), deconv_out=200),
                "lstm": dict(latent=100),
            },
        ),
        "paper": paper(cost="8 trials x 100k steps"),
    },
    claims=(
        Claim(
            "conv-fits-at-once",
            "The conv VAE's rec_bpc is <= 1.0 at every L in {10, 20, 30, 50} by step 1000",
            all_below,
            dict(where=CONV, y="rec_bpc", threshold=1.0, inclusive=True, at_step=1000),
        ),
        Claim(
            "lstm-fails-long",
            "At step 1000 the historyless LSTM's rec_bpc is >= the conv's + 1.0 at L in {30, 50}",
            difference_vs,
            dict(
                x="length",
                at=(30, 50),
                y="rec_bpc",
                subject=LSTM,
                baseline=CONV,
                at_least=1.0,
                at_step=1000,
            ),
            controls=(
                Control(
                    "at the end, the historyless LSTM is >= 1 bit/char below the unigram entropy "
                    "at L=10 (it learns at all)",
                    below_by,
                    dict(where={**LSTM, "length": 10}, y="rec_bpc", ref="unigram_bpc", margin=1.0),
                ),
            ),
        ),
    ),
)

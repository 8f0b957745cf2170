"""kl-frontier: a multi-objective Optuna search (NSGA-II) for the Pareto front of how much
information the latent code holds (valid KL, maximised) against the bound (valid total
bits per character, minimised), over model, alpha, input dropout, fragment length, ByteNet
depth, latent size and learning rate. Not a figure of the paper: the question it asks.
The space is flat: alpha and depth are sampled for every trial and ignored by the models
without them (alpha by the LSTM VAE, depth by all but hybrid-bytenet), which spreads their
Optuna importances over trials where they had no effect.

    vaestudy run kl-frontier --preset smoke                    # 4 trials, ~30 s on 2 CPU cores
    vaestudy run kl-frontier --preset cpu                     # 16 trials on real PTB,
                                                              # ~47 min on 2 cores
    vaestudy run kl-frontier --preset paper --num-samples 200  # GPUs

Every model keeps its own ramp (studies/presets.py at cpu scale: conv and hybrid-bytenet
1000 -> 2000, hybrid-lstm 1250 -> 2250, LSTM VAE 2250 -> 3000), and every trial trains 4000
steps.

Measured with the paper's LayerNorm cell (cpu, 2026-12-06): 42.0 min wall, the test suite
sharing the 2 cores for ~25 min of it; 15 trials completed (61-633 s each), 4 of the 5 LSTM VAE
trials kept KL (0.016-0.097 bits/char), one (L=53, p=0.09) stopped as collapsed at step 3500.
With the fused cell (withdrawn; another host, matmul 156.5 GFLOP/s at 1 thread): 46.7 min, all
5 LSTM VAE trials collapsed.
"""

from studies.presets import cpu, paper, smoke
from studies.spec import Categorical, Figure, Float, Int, Study

STUDY = Study(
    name="kl-frontier",
    title="Pareto front: KL held in z vs the bound",
    reproduces="search",
    sampler="nsga2",
    space={
        "model": Categorical(("hybrid-lstm", "hybrid-bytenet", "lstm")),
        "alpha": Float(0.0, 1.0),
        "dropout": Float(0.0, 0.9),
        "length": Int(12, 60),
        "depth": Int(1, 10),
        "latent": Int(8, 128, log=True),
        "lr": Float(1e-4, 3e-3, log=True),
    },
    metric=("valid/total_bpc", "valid/kl_bpc"),
    mode=("min", "max"),
    figure=Figure("pareto"),
    presets={
        "smoke": smoke(cost="~30 s, 4 trials", num_samples=4),
        "cpu": cpu(
            steps=4000,
            cost="42.0 min on 2 cores with tests sharing them for ~25 min, 16 trials",
            num_samples=16,
        ),
        "paper": paper(cost="~1.5 h per trial on a quarter GPU", num_samples=200),
    },
)

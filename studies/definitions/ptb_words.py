"""ptb-words: beyond the paper. The LSTM VAE on word-level Penn Treebank, trained by texar-pytorch's
recipe (examples/vae_text, config_lstm_ptb.py), so that vaestudy meets a number three independent
implementations publish: the test negative ELBO at the epoch with the best valid ELBO.

    | implementation                          | test NLL (nats/sentence) | test PPL |
    | asyml/texar-pytorch, examples/vae_text  | 102.54                   | 107.64   |
    | asyml/texar (TensorFlow), same example  | 102.10                   | 105.48   |
    | PaddleNLP, examples/text_generation/vae | 102.76                   | 108.71   |

NLL sums a sentence's words and its end token and averages over sentences; PPL is per token,
end tokens counted: exp(total NLL / (78,669 words + 3,761 end tokens)) on PTB's test split.

    vaestudy run ptb-words --preset smoke   # tiny model on the synthetic corpus's words, ~30 s
    vaestudy run ptb-words --preset cpu --cpus-per-trial 2   # the recipe, 1 seed, <= 32 epochs
    vaestudy run ptb-words --preset paper   # the recipe's 100 epochs, 3 seeds

Sized by a `cpu` run on 2 quiet cores (Intel Xeon, fp32 matmul 142 GFLOP/s at 1 thread, 285 at
2; 2026-12-07): 4.35 min per epoch (1,315 steps of ~191 ms, bucketed sentences, and the whole
valid split), so the `cpu` preset stops at 32 epochs, 2.3 h, a run one 3-hour working session
can start, finish and record; the plateau rule may end it sooner. (An earlier sizing from a short
timing, 130.9 ms per step, set 55 epochs, "2.8 h": measured, 55 epochs take 4 h. While anything
else used the cores, an epoch took 8-9 min: the trial's two threads wait on each other.) One
trial: give it both cores (`--cpus-per-trial 2`), or it trains on one thread.

The recipe, as config fields: one-layer LSTMs of 256 with torch's plain cell (`lstm_cell=fused`,
the anchors' cell; the paper's studies keep the LayerNorm cell) and PyTorch's default
initialisation (`init=default`); separate encoder and decoder embeddings of 256 initialised
Normal(0, 256^-0.5) (`embed=256`); z=32 into the decoder's initial state and concatenated to
every decoder input (`z_every_step`); dropout 0.5 on the decoder's input embeddings and on its
outputs, no word dropout; batch 32, Adam 1e-3, gradient norm clipped at 5; the KL weight starts at
0.1 and rises by 1/13,146 per step (10 epochs of 42,068 / 32 batches), so it reaches 1 in epoch
9; a report per epoch on the whole valid split; after 2 epochs without a better valid ELBO, the
model and optimiser go back to the best epoch's and lr becomes half the best epoch's (texar reloads
the optimiser saved with the best model, then steps its ExponentialLR), and training ends at the
5th such decay;
the final report measures the best epoch's model on valid and test (the test split's only use).

Where vaestudy's model differs from texar's, known before any run: the posterior reads the
encoder's last h (texar: h and c); the decoder's initial state is tanh(W z + b) (texar: W z + b);
the softmax covers 10,003 ids (PTB's 10,000 tokens and PAD, START, DUMMY, never targets); the
length-bucketed batches differ from texar's shuffled ones (padding is never scored either way).

The paper's question asked on words, and the remedies (not run here; a preset a user can run):

    vaestudy run ptb-words --preset variants --cpus-per-trial 2   # 6 trials, ~2.3 h each

runs the recipe's LSTM VAE beside the hybrid (alpha=0.2; it reads sentences padded to 84
tokens, PTB's longest sentence of 83 words and its end token; z reaches every step through the
deconv features) and the LSTM VAE with each remedy at the `remedies` study's settings (free
bits 0.25 nats per dimension, 4 cycles of ratio 0.5, aggressive training by He et al.'s rules,
its MI checked once an epoch as theirs, BN-VAE gamma 0.6). The claims judge the `lstm` variant
only.

Thresholds, fixed before any run: the test NLL lies in 101.5-103.5 nats per sentence (the three
anchors span 102.10-102.76) and the KL is >= 1 nat per sentence (the model uses z). The control:
the plateau schedule reached at least one halving, so training got near convergence; without it
both claims are INCONCLUSIVE. The band is PTB's: on another corpus (`--set corpus=...`) the
anchor claim is INCONCLUSIVE. The `cpu` verdicts are single-seed.
"""

from studies.definitions.remedies import REMEDIES
from studies.spec import Claim, Control, Figure, Preset, Study
from studies.results.checks import on_corpus, value_at, value_between

EPOCH = 1315  # steps per epoch: ceil(42,068 PTB training sentences / 32)
RECIPE = dict(
    tokens="word",
    vocab_size=10_000,
    embed=256,
    init="default",
    embed_dropout=0.5,
    output_dropout=0.5,
    z_every_step=True,
    lstm_cell="fused",
    hidden=256,
    latent=32,
    dropout=0.0,
    batch_size=32,
    lr=1e-3,
    grad_clip=5.0,
    anneal=True,
    kl_start=0.1,
    anneal_start=0,
    anneal_end=13_146,  # 10 epochs of 42,068 / 32 batches: texar's 1 / (10 * N / B) per step
    lr_decay=1.0,
    plateau=2,
    plateau_factor=0.5,
    plateau_decays=5,
    select_best=True,
    eval_every=0,  # one epoch
    eval_batches=0,  # the whole valid split
    mi_pool=0,  # valid/mutual_info is already over the whole split
)
CONVERGED = Control(
    "the plateau schedule halved the learning rate at least once (training got near convergence)",
    value_at,
    dict(where={"variant": "lstm"}, y="plateau_decays", at_least=1),
)

STUDY = Study(
    name="ptb-words",
    title="Word-level PTB: the LSTM VAE vs the published test NLL",
    reproduces="beyond the paper",
    model="lstm",
    base=RECIPE,
    variants={
        "lstm": dict(model="lstm"),
        # the paper's question on words: z reaches every step through the deconv features
        "hybrid": dict(model="hybrid-lstm", alpha=0.2, length=84, z_every_step=False),
        **{f"lstm+{name}": dict(model="lstm", **spec) for name, spec in REMEDIES.items()},
    },
    grid={"variant": ("lstm",)},
    metric="valid/nll_nats",
    figure=Figure("curves", series="variant"),
    presets={
        "smoke": Preset(
            size="tiny",
            corpus="synthetic",
            overrides=dict(
                embed=16,
                hidden=32,
                latent=8,
                batch_size=16,
                steps=60,
                eval_every=20,
                eval_batches=2,
                anneal_end=40,
                plateau=1,
                iw_samples=4,
                iw_sentences=32,
            ),
            cost="~30 s, 1 trial",
        ),
        "cpu": Preset(
            size="ptb",
            corpus="ptb",
            overrides=dict(steps=32 * EPOCH, iw_samples=50, iw_sentences=500),
            cost="1 trial, <= 32 epochs (the plateau rule may end it sooner): ~2.3 h on 2 quiet "
            "cores with --cpus-per-trial 2",
        ),
        "variants": Preset(
            size="ptb",
            corpus="ptb",
            overrides=dict(steps=32 * EPOCH, iw_samples=50, iw_sentences=500),
            grid={"variant": ("lstm", "hybrid", *(f"lstm+{name}" for name in REMEDIES))},
            cost="6 trials of <= 32 epochs, ~2.3 h each on 2 cores with --cpus-per-trial 2 "
            "(the hybrid and aggressive training cost more)",
        ),
        "paper": Preset(
            size="ptb",
            corpus="ptb",
            overrides=dict(steps=100 * EPOCH, iw_samples=500, iw_sentences=0),
            num_samples=3,
            cost="3 trials of up to 100 epochs",
        ),
    },
    claims=(
        Claim(
            "anchor-test-nll",
            "The test NLL at the best valid epoch lies in 101.5-103.5 nats per sentence "
            "(texar-pytorch 102.54, texar 102.10, PaddleNLP 102.76)",
            value_between,
            dict(where={"variant": "lstm"}, y="test_nll_nats", lo=101.5, hi=103.5),
            controls=(
                Control("the corpus is PTB (the anchors' number)", on_corpus, dict(corpus="ptb")),
                CONVERGED,
            ),
        ),
        Claim(
            "uses-z",
            "The test KL is >= 1 nat per sentence (the model puts information in z)",
            value_at,
            dict(where={"variant": "lstm"}, y="test_kl_nats", at_least=1.0),
            controls=(CONVERGED,),
        ),
    ),
)

"""One frozen, validated configuration for a text-VAE training run.

A run is fully described by a `TrainConfig`: which of the paper's four models, its sizes,
the objective (Eq. 1-4 of Semeniuta et al. 2017), the data and the optimiser. Studies,
the CLI and the Ray trainable all build one with `make_config(model, preset, overrides)`
and change it only with `dataclasses.replace`, so every value is validated once, here.

Short keys (`length`, `alpha`, `dropout`, ...) are the names used on the command line
(`--set key=value`), in MLflow params and in study search spaces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

MODELS = ("conv", "hybrid-lstm", "hybrid-bytenet", "lstm")
LSTM_MODELS = ("hybrid-lstm", "lstm")  # the models with an LSTM, whose cell `lstm_cell` picks
LSTM_CELLS = ("fused", "layernorm")
TOKENS = ("char", "word")
INITS = ("released", "default")
DEVICES = ("auto", "cpu", "cuda")
BN_EPS = 1e-5  # BN-VAE's BatchNorm eps (PyTorch's default, the authors' value)


class ConfigError(ValueError):
    """A bad configuration value; the message names the field and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    # --- model -------------------------------------------------------------------------
    model: str = "hybrid-lstm"  # one of MODELS
    latent: int = 50  # size of z
    conv_channels: tuple[int, ...] = (128, 256)  # encoder conv widths; the decoder mirrors them
    deconv_out: int = 200  # channels of the last deconv layer (features fed to the heads)
    hidden: int = 500  # LSTM units (hybrid-lstm decoder; lstm encoder and decoder)
    # "layernorm": the paper's LSTM (one LayerNorm over the 4H pre-activations), every preset's;
    # "fused": torch's plain LSTM (cuDNN on GPU), an explicit stand-in only
    lstm_cell: str = "layernorm"
    # lstm only: z also concatenated to the decoder's input at every step, besides its initial
    # state (the remedies' codebases); False is the paper's and Bowman's LSTM VAE (initial state)
    z_every_step: bool = False
    depth: int = 6  # ByteNet masked-conv layers (receptive field depth + 1)
    bytenet_width: int = 256  # ByteNet channels
    # --- objective (Eq. 1-4) -----------------------------------------------------------
    alpha: float = 0.2  # weight of the auxiliary reconstruction term (Eq. 4)
    dropout: float = 0.0  # input ("word") dropout on decoder inputs; 1.0 = historyless decoder
    kl: bool = True  # False: no KL term at all (a stochastic autoencoder, Fig 3)
    anneal: bool = True  # False: KL weight 1 from step 0
    anneal_start: int = 1000  # first step of the linear KL-weight ramp
    anneal_end: int = 8000  # step at which the KL weight reaches 1
    kl_eps: float = 1e-3  # floor of the KL weight during annealing
    # > 0: the KL weight starts here and rises by 1 / (anneal_end - anneal_start) per step
    # after anneal_start, capped at 1 (texar's rule: it reaches 1 before anneal_end); kl_eps unused
    kl_start: float = 0.0
    # --- collapse remedies of later work (all off by default) ---------------------------
    free_bits: float = 0.0  # nats per latent dimension: KL_j below it costs nothing (Kingma 2016)
    # cyclical annealing (Fu et al. 2019): M cycles over the whole run from step 0, the weight
    # rising 0 -> 1 over the first `cycle_ratio` of each, then 1; replaces the anneal_start/end ramp
    cycles: int = 0
    cycle_ratio: float = 0.5  # share of each cycle over which the weight rises, then holds at 1
    # aggressive encoder training (He et al. 2019): before each decoder update, encoder-only
    # updates (the first on the decoder's batch) until the mean loss of a window of
    # AGGRESSIVE_WINDOW (15) updates is higher than the window's before, at most
    # `aggressive_max_inner`; the mode ends at the first check whose held-out MI is below the
    # previous check's (the first compares with 0). The KL weight follows the run's own schedule
    # (the model's ramp, or cycles): He et al.'s default turns annealing off under aggressive
    # training (their Table 1 reports both); set anneal=off for that.
    aggressive: bool = False
    aggressive_max_inner: int = 100  # cap on encoder-only updates per decoder update
    aggressive_check_every: int = 0  # steps between MI checks; 0 = one pass over the training data
    aggressive_max_steps: int = (
        0  # a budget's cap: the mode ends at this step at the latest; 0 = none
    )
    bn_vae: bool = False  # BatchNorm on the posterior means with a fixed scale (Zhu et al. 2020)
    bn_gamma: float = 0.6  # that scale
    # --- inputs and regularisers (the word-level recipes; off for the paper's models) -------
    # 0: one-hot tokens, as the paper's models read characters; > 0: a learned embedding of this
    # width wherever tokens are read (encoder, decoder input; separate tables)
    embed: int = 0
    # "released": every weight ~ Uniform(-0.1, 0.1), the paper's code; "default": PyTorch's
    # initialisation, embeddings ~ Normal(0, embed^-0.5) (texar's recipe)
    init: str = "released"
    embed_dropout: float = 0.0  # dropout on the decoder's input embeddings (needs embed > 0)
    output_dropout: float = 0.0  # dropout on the decoder's features before its output layer
    # --- data --------------------------------------------------------------------------
    corpus: str = "ptb"  # "ptb", "synthetic" or a path to a UTF-8 file or folder
    # "char": fragments of `length` characters, the paper's; "word": sentences of words, each
    # ended by an end token, in length-bucketed padded batches (textvae_core.words)
    tokens: str = "char"
    vocab_size: int = 0  # words only: the most frequent training words kept, <eos> and <unk>
    # counted; the rest become <unk>. 0 keeps every word
    # characters: the fragment length L. words: the conv and hybrid models' longest sentence in
    # tokens (longer ones are cut, and counted), and every model's generation length
    length: int = 52
    # --- optimisation ------------------------------------------------------------------
    steps: int = 100_000
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay: float = 1.0  # multiply lr by this every `lr_decay_every` steps after `lr_decay_after`
    lr_decay_every: int = 1000
    lr_decay_after: int = 20_000
    grad_clip: float = 0.0  # max global grad norm; 0 disables clipping
    # decay on plateau (texar's recipe): after `plateau` reports in a row without a better valid
    # bound, the model and optimiser go back to the best report's and lr becomes plateau_factor
    # times the best report's lr (textvae_core.selection); the run ends at the
    # `plateau_decays`-th decay. 0 = off (lr_decay's steps apply instead)
    plateau: int = 0
    plateau_factor: float = 0.5
    plateau_decays: int = 5
    select_best: bool = False  # the final report measures the best valid bound's model
    # --- evaluation and bookkeeping ----------------------------------------------------
    eval_every: int = 1000  # steps between reports (train and valid metrics); 0 = one epoch
    eval_batches: int = 4  # validation batches per report; 0 = the whole split (words only)
    iw_samples: int = 0  # importance samples for the final NLL bound; 0 skips it
    iw_sentences: int = 0  # words: sentences of the IW bound (the split's first); 0 = all
    mi_pool: int = 1024  # validation fragments of the final MI estimate (ceiling log N); 0 skips it
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    device: str = "auto"  # "auto" uses CUDA (with bf16 autocast) when present

    def __post_init__(self) -> None:
        # Coerce lists (from JSON / Optuna) to tuples so the config stays hashable.
        if not isinstance(self.conv_channels, tuple):
            object.__setattr__(self, "conv_channels", tuple(self.conv_channels))
        _check(self.model in MODELS, "model", f"one of {', '.join(MODELS)}", self.model)
        _check(
            self.lstm_cell in LSTM_CELLS,
            "lstm_cell",
            f"one of {', '.join(LSTM_CELLS)}",
            self.lstm_cell,
        )
        _check(
            not self.z_every_step or self.model == "lstm",
            "z_every_step",
            "False unless model is lstm (the hybrids' features already carry z to every step)",
            self.z_every_step,
        )
        _check(self.device in DEVICES, "device", f"one of {', '.join(DEVICES)}", self.device)
        _check(self.tokens in TOKENS, "tokens", f"one of {', '.join(TOKENS)}", self.tokens)
        _check(self.init in INITS, "init", f"one of {', '.join(INITS)}", self.init)
        _check(
            self.vocab_size == 0 or (self.tokens == "word" and self.vocab_size >= 3),
            "vocab_size",
            "0 (every word), or with tokens=word an integer >= 3 (<eos>, <unk> and a word)",
            self.vocab_size,
        )
        _check(self.embed >= 0, "embed", "an integer >= 0 (0 = one-hot tokens)", self.embed)
        _check(
            0.0 <= self.embed_dropout < 1.0 and (self.embed or not self.embed_dropout),
            "embed_dropout",
            "a number in [0, 1), and 0 unless embed > 0",
            self.embed_dropout,
        )
        _check(
            0.0 <= self.output_dropout < 1.0,
            "output_dropout",
            "a number in [0, 1)",
            self.output_dropout,
        )
        _check(0.0 <= self.kl_start < 1.0, "kl_start", "a number in [0, 1)", self.kl_start)
        _check(self.plateau >= 0, "plateau", "an integer >= 0 (0 = off)", self.plateau)
        _check(
            0.0 < self.plateau_factor < 1.0,
            "plateau_factor",
            "a number in (0, 1)",
            self.plateau_factor,
        )
        _check(self.plateau_decays >= 1, "plateau_decays", "an integer >= 1", self.plateau_decays)
        _check(
            not self.plateau or self.lr_decay == 1.0,
            "plateau",
            "0 when lr_decay < 1 (one learning-rate schedule at a time)",
            self.plateau,
        )
        _check(
            self.iw_sentences >= 0, "iw_sentences", "an integer >= 0 (0 = all)", self.iw_sentences
        )
        _check(8 <= self.length <= 256, "length", "an integer from 8 to 256", self.length)
        _check(self.latent >= 1, "latent", "an integer >= 1", self.latent)
        _check(
            len(self.conv_channels) >= 1 and all(c >= 1 for c in self.conv_channels),
            "conv_channels",
            "one or more positive integers",
            self.conv_channels,
        )
        _check(self.deconv_out >= 1, "deconv_out", "an integer >= 1", self.deconv_out)
        _check(self.hidden >= 1, "hidden", "an integer >= 1", self.hidden)
        _check(1 <= self.depth <= 64, "depth", "an integer from 1 to 64", self.depth)
        _check(self.bytenet_width >= 1, "bytenet_width", "an integer >= 1", self.bytenet_width)
        _check(self.alpha >= 0, "alpha", "a number >= 0", self.alpha)
        _check(0.0 <= self.dropout <= 1.0, "dropout", "a number in [0, 1]", self.dropout)
        _check(
            0 <= self.anneal_start < self.anneal_end,
            "anneal_start/anneal_end",
            "0 <= anneal_start < anneal_end",
            (self.anneal_start, self.anneal_end),
        )
        _check(0.0 < self.kl_eps < 1.0, "kl_eps", "a number in (0, 1)", self.kl_eps)
        _check(self.free_bits >= 0, "free_bits", "a number of nats >= 0 (0 = off)", self.free_bits)
        _check(self.cycles >= 0, "cycles", "an integer >= 0 (0 = off)", self.cycles)
        _check(
            not self.cycles or (self.anneal and self.kl),
            "cycles",
            "0 when anneal or kl is off (the cycles replace the annealing ramp)",
            self.cycles,
        )
        _check(
            self.cycles <= self.steps,
            "cycles",
            "an integer <= steps (the cycles split the run)",
            self.cycles,
        )
        _check(0.0 < self.cycle_ratio <= 1.0, "cycle_ratio", "a number in (0, 1]", self.cycle_ratio)
        _check(
            self.aggressive_max_inner >= 1,
            "aggressive_max_inner",
            "an integer >= 1",
            self.aggressive_max_inner,
        )
        _check(
            self.aggressive_check_every >= 0,
            "aggressive_check_every",
            "an integer >= 0 (0 = one pass over the training data)",
            self.aggressive_check_every,
        )
        _check(
            self.aggressive_max_steps >= 0,
            "aggressive_max_steps",
            "an integer >= 0 (0 = no cap)",
            self.aggressive_max_steps,
        )
        _check(self.bn_gamma > 0, "bn_gamma", "a number > 0", self.bn_gamma)
        _check(bool(self.corpus), "corpus", "'ptb', 'synthetic' or a path", self.corpus)
        _check(self.steps >= 1, "steps", "an integer >= 1", self.steps)
        _check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        _check(self.lr > 0, "lr", "a number > 0", self.lr)
        _check(0 < self.lr_decay <= 1, "lr_decay", "a number in (0, 1]", self.lr_decay)
        _check(self.lr_decay_every >= 1, "lr_decay_every", "an integer >= 1", self.lr_decay_every)
        _check(self.lr_decay_after >= 0, "lr_decay_after", "an integer >= 0", self.lr_decay_after)
        _check(self.grad_clip >= 0, "grad_clip", "a number >= 0 (0 disables)", self.grad_clip)
        _check(
            self.eval_every >= 0, "eval_every", "an integer >= 0 (0 = one epoch)", self.eval_every
        )
        _check(
            self.eval_batches >= 1 or (self.eval_batches == 0 and self.tokens == "word"),
            "eval_batches",
            "an integer >= 1, or 0 (the whole split) with tokens=word",
            self.eval_batches,
        )
        _check(self.iw_samples >= 0, "iw_samples", "an integer >= 0", self.iw_samples)
        _check(
            self.mi_pool == 0 or self.mi_pool >= 2,
            "mi_pool",
            "0 (off) or an integer >= 2",
            self.mi_pool,
        )
        _check(self.threads >= 0, "threads", "an integer >= 0", self.threads)

    @property
    def historyless(self) -> bool:
        """True when the decoder never sees previous characters (conv, or lstm with p=1)."""
        return self.model == "conv" or (self.model == "lstm" and self.dropout >= 1.0)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        return d


def _check(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: expected {allowed}")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# Presets: the released PTB defaults (REFERENCE.md) and the tweets setup (Sec 4.3).
_PTB = {
    "conv": dict(latent=100),
    "hybrid-lstm": dict(latent=50, hidden=500),
    "hybrid-bytenet": dict(latent=50, bytenet_width=256),
    "lstm": dict(latent=100, hidden=500, grad_clip=100.0, anneal_start=10_000, anneal_end=17_000),
}
_HYBRID_LR = dict(lr_decay=0.95, lr_decay_every=1000, lr_decay_after=20_000)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ptb": {m: {**kw, **(_HYBRID_LR if m.startswith("hybrid") else {})} for m, kw in _PTB.items()},
    # Tweets (Sec 4.3): 5 conv layers, LSTM 1000, z=100, alpha=0.2, L=128, batch 32 (~10.8M params).
    "tweets": {
        m: dict(
            conv_channels=(128, 256, 512, 512, 512),
            latent=100,
            hidden=1000,
            alpha=0.2,
            length=128,
            batch_size=32,
            **(_HYBRID_LR if m.startswith("hybrid") else {}),
        )
        for m in MODELS
    },
    # Tiny sizes for tests and smoke runs: seconds on a laptop CPU.
    "tiny": {
        m: dict(
            conv_channels=(16, 32),
            deconv_out=32,
            latent=8,
            hidden=64,
            bytenet_width=32,
            depth=2,
            batch_size=16,
            steps=60,
            eval_every=20,
            eval_batches=2,
            anneal_start=10,
            anneal_end=40,
            mi_pool=256,
        )
        for m in MODELS
    },
}

# Short command-line keys that are not field names.
ALIASES = {
    "channels": "conv_channels",
    "width": "bytenet_width",
    "batch": "batch_size",
    "p": "dropout",
}


def parse_value(key: str, raw: Any) -> Any:
    """Convert one `--set key=value` string (or a JSON scalar) to the field's type."""
    name = ALIASES.get(key, key)
    if name not in FIELDS:
        allowed = ", ".join(sorted(set(FIELDS) | set(ALIASES)))
        raise ConfigError(f"unknown key {key!r}: allowed keys are {allowed}")
    kind = FIELDS[name].type
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if kind == "bool":
            low = text.lower()
            if low in ("1", "true", "on", "yes"):
                return True
            if low in ("0", "false", "off", "no"):
                return False
            raise ValueError
        if kind == "int":
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind == "float":
            return float(text)
        if kind.startswith("tuple"):
            return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        expected = {"bool": "on/off", "int": "an integer", "float": "a number"}.get(
            kind, "comma-separated integers"
        )
        raise ConfigError(f"{key}={raw!r} is not allowed: expected {expected}") from None
    return text


def make_config(
    model: str = "hybrid-lstm",
    preset: str | None = "ptb",
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Build a validated config: defaults, then `PRESETS[preset][model]`, then overrides.

    Override values may be strings (`--set`), which are parsed to the field's type.
    """
    if model not in MODELS:
        raise ConfigError(f"model={model!r} is not allowed: expected one of {', '.join(MODELS)}")
    values: dict[str, Any] = {"model": model}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                f"preset={preset!r} is not allowed: expected one of {', '.join(PRESETS)}"
            )
        values.update(PRESETS[preset][model])
    for key, raw in (overrides or {}).items():
        values[ALIASES.get(key, key)] = parse_value(key, raw)
    return TrainConfig(**values)


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ["alpha=0.2", "anneal=off"] into {"alpha": 0.2, "anneal": False}, validating keys."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r} is not allowed: expected key=value, e.g. alpha=0.2")
        key, raw = pair.split("=", 1)
        out[key.strip()] = parse_value(key.strip(), raw)
    return out

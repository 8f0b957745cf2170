"""The paper's four text VAEs (Semeniuta et al. 2017, Fig 2), as plain nn.Modules.

Reading order: the shared base `TextVAE`, the models, then `build_model(config,
vocab_size)`. Their building blocks (conv encoder, deconv decoder, the hybrids' LSTM and
ByteNet heads) are in `blocks`.

Every model maps token ids x (B, L) to a `VAEOutput`:
    logits      (B, L, V)  the decoder's p(x_t | z, x_<t) (historyless models: p(x_t | z))
    aux_logits  (B, L, V)  the hybrid models' historyless head (Eq. 2), else None
    mu, logvar  (B, Z)     the diagonal Gaussian posterior q(z | x)
Input is one-hot characters (no learned embedding), as in the released code; `embed` > 0
gives every model learned token embeddings instead (`blocks.TokenInput`, the word recipes).
Every layer of ours that takes one-hot characters computes its product with them as a row gather
(`project`, `onehot_conv`): the same model, without the FLOPs of multiplying by zeros.
The fused nn.LSTM takes its input whole, so there the one-hot vectors are built.

Conv stacks halve the length per layer, so they run on L rounded up to a multiple of
2^layers ("padded length"); the padding is PAD tokens on the right, and every loss term
ignores positions >= L (see losses.py). A user who asks for L=10 gets L=10.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvEncoder, DeconvDecoder, LSTMHead, TokenInput, make_head, padded_length
from .config import BN_EPS, TrainConfig
from .lstm import make_lstm
from .tokens import DUMMY, PAD, START


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # (B, L, V)
    aux_logits: torch.Tensor | None  # (B, L, V)
    mu: torch.Tensor  # (B, Z)
    logvar: torch.Tensor  # (B, Z)


def _init_uniform(model: nn.Module, scale: float = 0.1) -> None:
    """Released code: every weight and bias ~ Uniform(-0.1, 0.1); norm layers keep (1, 0)."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
            continue
        for p in module.parameters(recurse=False):
            nn.init.uniform_(p, -scale, scale)


def _init_default(model: nn.Module) -> None:
    """texar's recipe: PyTorch's own initialisation, embeddings ~ Normal(0, width^-0.5)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, module.embedding_dim**-0.5)


def last_positions(x: torch.Tensor) -> torch.Tensor:
    """Index of each row's last token (B,): before its PAD tail (sentences), else L - 1."""
    return ((x != PAD).sum(1) - 1).clamp(min=0)


class TextVAE(nn.Module):
    """Shared posterior sampling, decoder-input preparation and generation."""

    ENCODER = ()  # names of the submodules that compute q(z | x), for encoder-only updates

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        # BN-VAE (Zhu et al. 2020): BatchNorm on the posterior means, scale fixed at gamma
        # (not trained), shift learnable; its batch statistics bound the expected KL below.
        self.mu_norm = nn.BatchNorm1d(config.latent, eps=BN_EPS) if config.bn_vae else None
        if self.mu_norm is not None:
            nn.init.constant_(self.mu_norm.weight, config.bn_gamma)
            self.mu_norm.weight.requires_grad_(False)

    # encode / reparameterize / decode -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z | x): mu, logvar (B, Z)."""
        mu, logvar = self.posterior(x)
        return self.normalize_mean(mu), logvar

    def normalize_mean(self, mu: torch.Tensor) -> torch.Tensor:
        """BN-VAE's BatchNorm on the posterior means (B, Z); without it, mu as it is."""
        return mu if self.mu_norm is None else self.mu_norm(mu)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters of q(z | x) (aggressive training updates them alone)."""
        names = (*self.ENCODER, "mu_norm")
        return [
            p
            for n in names
            if getattr(self, n, None) is not None
            for p in getattr(self, n).parameters()
        ]

    def decode(
        self, z: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (B, L, V) and aux logits for targets x (B, L) given z."""
        raise NotImplementedError

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)  # (B, Z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if sample else mu
        logits, aux = self.decode(z, x, generator)
        return VAEOutput(logits, aux, mu, logvar)

    def decoder_inputs(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Previous characters [START, x_0 .. x_{L-2}] after input dropout (B, L).

        Dropout replaces a token by DUMMY with probability p in training; p=1 is the
        historyless decoder, so then every input is DUMMY in evaluation too.
        """
        prev = torch.cat([torch.full_like(x[:, :1], START), x[:, :-1]], dim=1)
        p = self.config.dropout
        if p >= 1.0:
            return torch.full_like(prev, DUMMY)
        if p > 0 and self.training:
            drop = torch.rand(prev.shape, generator=generator, device=prev.device) < p
            prev = prev.masked_fill(drop, DUMMY)
        return prev

    # generation -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        length: int,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode ids (B, length) from z, greedily (temperature 0) or by sampling.

        Generic autoregressive loop: re-runs the teacher-forced decoder on the prefix, so
        it is exact for every model; the recurrent models override it with a stepwise one.
        """
        out = torch.full((z.shape[0], length), PAD, dtype=torch.long, device=z.device)
        for t in range(length):
            logits, _ = self.decode(z, out, generator)
            out[:, t] = _pick(logits[:, t], temperature, generator)
        return out


def _pick(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    logits = logits.float()
    logits[:, :4] = -float("inf")  # never emit reserved ids (PAD, START, DUMMY, UNK)
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class ConvDeconvVAE(TextVAE):
    """The conv encoder and deconv decoder (Fig 2a) that the conv and hybrid models share."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__(config, vocab_size)
        self.padded_len = padded_length(config.length, len(config.conv_channels))
        self.encoder = ConvEncoder(
            vocab_size, config.conv_channels, self.padded_len, config.latent, config.embed
        )
        self.drop = nn.Dropout(config.output_dropout)  # before the output layers
        self.decoder = DeconvDecoder(
            config.latent, config.conv_channels, config.deconv_out, self.padded_len
        )

    ENCODER = ("encoder",)

    def posterior(self, x):
        return self.encoder(F.pad(x, (0, self.padded_len - x.shape[1]), value=PAD))

    def features(self, z: torch.Tensor, length: int) -> torch.Tensor:
        return self.decoder(z)[:, :, :length].transpose(1, 2)  # (B, L, F)


class ConvVAE(ConvDeconvVAE):
    """Fig 2a: conv encoder, deconv decoder, per-position softmax; no recurrence."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__(config, vocab_size)
        self.head = nn.Linear(config.deconv_out, vocab_size)

    def decode(self, z, x, generator=None):
        return self.head(self.drop(self.features(z, x.shape[1]))), None

    @torch.no_grad()
    def generate(self, z, length, temperature=0.0, generator=None):
        logits, _ = self.decode(
            z, torch.zeros(z.shape[0], length, dtype=torch.long, device=z.device)
        )
        return torch.stack([_pick(logits[:, t], temperature, generator) for t in range(length)], 1)


class HybridVAE(ConvDeconvVAE):
    """Fig 2b/2c: conv encoder, deconv decoder whose features feed (a) the auxiliary
    historyless head (Eq. 2) and (b) an autoregressive head over [features ; x_{t-1}]
    (`head_name`: an LSTM or a ByteNet). z reaches that head only through the features."""

    def __init__(self, config: TrainConfig, vocab_size: int, head_name: str):
        super().__init__(config, vocab_size)
        self.aux_head = nn.Linear(config.deconv_out, vocab_size)
        self.head = make_head(head_name, config, config.deconv_out, vocab_size)

    def decode(self, z, x, generator=None):
        feats = self.features(z, x.shape[1])  # (B, L, F)
        aux = self.aux_head(self.drop(feats))  # (B, L, V)
        return self.head(feats, self.decoder_inputs(x, generator)), aux  # (B, L, V)

    @torch.no_grad()
    def generate(self, z, length, temperature=0.0, generator=None):
        if not isinstance(self.head, LSTMHead):  # a stateless head re-runs on the prefix
            return super().generate(z, length, temperature, generator)
        feats = self.features(z, length)
        prev = torch.full((z.shape[0],), START, dtype=torch.long, device=z.device)
        state, out = None, []
        for t in range(length):
            logits, state = self.head.step(feats[:, t], prev, state)
            prev = _pick(logits, temperature, generator)
            out.append(prev)
        return torch.stack(out, 1)


class LSTMVAE(TextVAE):
    """Bowman et al. (2016): LSTM encoder, LSTM decoder initialised from z, input dropout.

    With `z_every_step` the decoder also reads z at every step, concatenated to its input
    [z ; one_hot(x_{t-1})], as the collapse remedies' codebases feed it (He et al. 2019, Fu et
    al. 2019, Li et al. 2019, Zhu et al. 2020); the paper's LSTM VAE reads it through the
    initial state only. With `embed` the encoder and decoder read tokens through their own
    embeddings. The posterior reads the encoder's h at each row's last token (a sentence's end
    token in a padded batch of words)."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__(config, vocab_size)
        H = config.hidden
        self.encoder_tokens = TokenInput(vocab_size, config.embed)
        self.encoder_rnn = make_lstm(config.lstm_cell, self.encoder_tokens.width, H, vocab_size)
        self.to_posterior = nn.Linear(H, 2 * config.latent)
        self.to_state = nn.Linear(config.latent, 2 * H)
        z_in = config.latent if config.z_every_step else 0
        self.decoder_tokens = TokenInput(vocab_size, config.embed, config.embed_dropout)
        self.decoder_rnn = make_lstm(
            config.lstm_cell, z_in + self.decoder_tokens.width, H, vocab_size
        )
        self.drop = nn.Dropout(config.output_dropout)
        self.out = nn.Linear(H, vocab_size)

    ENCODER = ("encoder_tokens", "encoder_rnn", "to_posterior")

    def posterior(self, x):
        h, _ = self.encoder_rnn(*self.encoder_tokens(None, x))  # (B, L, H)
        last = h[torch.arange(h.shape[0], device=h.device), last_positions(x)]  # (B, H)
        mu, logvar = self.to_posterior(last).chunk(2, dim=-1)
        return mu, logvar

    def initial_state(self, z):
        h0, c0 = torch.tanh(self.to_state(z)).chunk(2, dim=-1)  # (B, H) each
        return h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()

    def step_inputs(self, z: torch.Tensor, steps: int) -> torch.Tensor | None:
        """The dense part of the decoder's input: z at each of `steps` steps (B, steps, Z) with
        `z_every_step`, else None (one-hot characters only)."""
        return z.unsqueeze(1).expand(-1, steps, -1) if self.config.z_every_step else None

    def decode(self, z, x, generator=None):
        prev = self.decoder_inputs(x, generator)  # (B, L)
        h, _ = self.decoder_rnn(
            *self.decoder_tokens(self.step_inputs(z, x.shape[1]), prev), self.initial_state(z)
        )  # (B, L, H)
        return self.out(self.drop(h)), None

    @torch.no_grad()
    def generate(self, z, length, temperature=0.0, generator=None):
        state = self.initial_state(z)
        dense = self.step_inputs(z, 1)  # (B, 1, Z) or None
        first = DUMMY if self.config.dropout >= 1.0 else START
        prev = torch.full((z.shape[0],), first, dtype=torch.long, device=z.device)
        out = []
        for t in range(length):
            h, state = self.decoder_rnn(*self.decoder_tokens(dense, prev.unsqueeze(1)), state)
            tok = _pick(self.out(h[:, 0]), temperature, generator)
            out.append(tok)
            prev = torch.full_like(tok, DUMMY) if self.config.dropout >= 1.0 else tok
        return torch.stack(out, 1)


def build_model(config: TrainConfig, vocab_size: int) -> TextVAE:
    """The model named by `config.model` (one of conv, hybrid-lstm, hybrid-bytenet, lstm)."""
    makers = {
        "conv": ConvVAE,
        "lstm": LSTMVAE,
        "hybrid-lstm": lambda c, v: HybridVAE(c, v, "lstm"),
        "hybrid-bytenet": lambda c, v: HybridVAE(c, v, "bytenet"),
    }
    if config.model not in makers:
        raise ValueError(
            f"model={config.model!r} is not allowed: expected one of {', '.join(makers)}"
        )
    model = makers[config.model](config, vocab_size)
    if config.init == "released":
        _init_uniform(model)
    else:
        _init_default(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

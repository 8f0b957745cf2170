"""The building blocks of the text VAEs (Semeniuta et al. 2017, Fig 2): the conv encoder, the
deconv decoder, and the hybrids' autoregressive heads (an LSTM or a ByteNet), chosen by name.

Shapes: token ids (B, L); features (B, L, F) or, inside the conv stacks, (B, C, L). A layer
that takes one-hot characters alone computes its product with them as a row gather
(`project`, `onehot_conv`); one that takes features too folds them into its matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import lstm_ext
from .config import TrainConfig
from .lstm import make_lstm
from .onehot import onehot_conv, project


def padded_length(length: int, layers: int) -> int:
    """Smallest multiple of 2**layers that holds `length` characters."""
    unit = 2**layers
    return unit * math.ceil(length / unit)


class TokenInput(nn.Module):
    """How a layer reads token ids. embed=0: as one-hot vectors, with no parameters of its
    own (the layer's weight gathers rows, `project`); embed > 0: a learned embedding with
    dropout `dropout` in training. `width` is what the layer's input weight needs for them."""

    def __init__(self, vocab_size: int, embed: int = 0, dropout: float = 0.0):
        super().__init__()
        self.width = embed or vocab_size
        self.embedding = nn.Embedding(vocab_size, embed) if embed else None
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, dense: torch.Tensor | None, ids: torch.Tensor):
        """(dense, ids) as `project` and the LSTMs take them: unchanged for one-hot tokens;
        else ([dense ; embedding(ids)], None)."""
        if self.embedding is None:
            return dense, ids
        e = self.embedding(ids)
        if self.dropout is not None:
            e = self.dropout(e)
        return (e if dense is None else torch.cat([dense, e.to(dense.dtype)], -1)), None


class ConvEncoder(nn.Module):
    """Conv1d(k3, s2, p1) -> BN -> ReLU per layer, then Linear to (mu, log sigma^2)."""

    def __init__(
        self,
        vocab_size: int,
        channels: tuple[int, ...],
        padded_len: int,
        latent: int,
        embed: int = 0,
    ):
        super().__init__()
        self.tokens = TokenInput(vocab_size, embed)
        layers, c_in = [], self.tokens.width
        for c_out in channels:
            layers += [
                nn.Conv1d(c_in, c_out, 3, stride=2, padding=1),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.vocab_size = vocab_size
        self.to_posterior = nn.Linear(padded_len // 2 ** len(channels) * c_in, 2 * latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokens.embedding is None:  # the first conv on one-hot x (B, Lp): (B, C, Lp/2)
            h = onehot_conv(self.convs[0], x)
        else:
            h = self.convs[0](self.tokens.embedding(x).transpose(1, 2))
        h = self.convs[1:](h).flatten(1)  # (B, Lp/2^n * C)
        mu, logvar = self.to_posterior(h).chunk(2, dim=-1)  # (B, Z) each
        return mu, logvar


class DeconvDecoder(nn.Module):
    """Linear(z) -> ReLU -> reshape, then ConvTranspose1d(k3, s2) -> BN -> ReLU per layer.

    Each layer doubles the length exactly (output_padding=1); the encoder's channels are
    mirrored and the last layer has `out_channels` (200 in the paper).
    """

    def __init__(self, latent: int, channels: tuple[int, ...], out_channels: int, padded_len: int):
        super().__init__()
        self.start_len = padded_len // 2 ** len(channels)
        self.start_channels = channels[-1]
        self.from_latent = nn.Linear(latent, self.start_len * self.start_channels)
        widths = list(reversed(channels)) + [out_channels]
        layers = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [
                nn.ConvTranspose1d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.from_latent(z))
        h = h.view(-1, self.start_channels, self.start_len)  # (B, C, Lp/2^n)
        return self.deconvs(h)  # (B, F, Lp)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each position of a (B, C, L) tensor.

    The released ByteNet head uses BatchNorm, whose training-mode statistics pool over
    time and so leak the future into a causal stack; a per-position norm keeps the
    mask exact in training and evaluation alike.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _ShiftConcat(torch.autograd.Function):
    """x (B, L, W) -> [x_{t-1} ; x_t] (B, L, 2W), zeros for x_{-1}: the masked conv's two taps
    side by side, written once into one buffer (no padded copy, no concatenation)."""

    @staticmethod
    def forward(ctx, x):
        B, L, W = x.shape
        taps = x.new_empty(B, L, 2 * W)
        taps[:, :1, :W].zero_()
        taps[:, 1:, :W].copy_(x[:, :-1])
        taps[:, :, W:].copy_(x)
        return taps

    @staticmethod
    def backward(ctx, d_taps):
        W = d_taps.shape[-1] // 2
        dx = d_taps[..., W:].clone()
        dx[:, :-1] += d_taps[:, 1:, :W]
        return dx


class _HighwayEpilogue(torch.autograd.Function):
    """out = x + sigmoid(a) (relu(LayerNorm(h)) - x) for [h | a] = y + bias, as one compiled
    loop per row each way (`lstm_ext.cpp`'s highway_forward / highway_backward)."""

    @staticmethod
    def forward(ctx, y, x, bias, gamma, beta, eps):
        out, mean, rstd = lstm_ext.ops().highway_forward(y, x, bias, gamma, beta, eps)
        ctx.save_for_backward(y, x, mean, rstd, bias, gamma, beta)
        return out

    @staticmethod
    def backward(ctx, d_out):
        return (*lstm_ext.ops().highway_backward(d_out, *ctx.saved_tensors), None)


class MaskedHighwayConv(nn.Module):
    """Causal conv with 2 taps (t-1, t), no dilation, inside a highway connection.

    Runs channel-last, (B, L, W): the two taps are one matmul on [x_{t-1} ; x_t] (the conv's
    weight (2W, W, 2) read as (2W, 2W)), and the norm is a LayerNorm over the last axis, so
    no transposes; the parameters are the Conv1d's. On CPU, where the compiled kernels are
    built (`lstm_ext`), the norm, gate and highway run as one fused loop each way and the
    taps' matrix is laid out input-major, the layout the BLAS multiplies fastest; elsewhere
    (CUDA, VAESTUDY_LSTM_EXT=0, no compiler) the same arithmetic runs as torch ops."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(width, 2 * width, kernel_size=2)
        self.norm = ChannelNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W)
        taps = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)  # (2W, 2W)
        if lstm_ext.runs_on(x):
            B, L, W = x.shape
            both = _ShiftConcat.apply(x).view(B * L, 2 * W)
            y = both @ taps.t().contiguous()  # (B L, 2W), the bias added in the epilogue
            norm = self.norm.norm
            out = _HighwayEpilogue.apply(
                y, x.reshape(B * L, W), self.conv.bias, norm.weight, norm.bias, norm.eps
            )
            return out.view(B, L, W)
        prev = F.pad(x, (0, 0, 1, 0))[:, :-1]  # x_{t-1}, zeros at t=0: output t sees t-1, t
        h, gate = F.linear(torch.cat([prev, x], -1), taps, self.conv.bias).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        return gate * F.relu(self.norm.norm(h)) + (1 - gate) * x


class ByteNetHead(nn.Module):
    """1x1 conv -> norm -> gated (tanh * sigmoid), N masked highway convs, Linear to V.

    Position t reads [deconv features_t ; one-hot x_{t-1}], so after N layers its logits
    depend on the N+1 characters x_{t-N-1} .. x_{t-1} (Fig 2c). The 1x1 entry conv is a
    linear map per position over [features ; one-hot] (`project`).
    """

    def __init__(
        self,
        features: int,
        tokens: TokenInput,
        width: int,
        depth: int,
        vocab_size: int,
        output_dropout: float = 0.0,
    ):
        super().__init__()
        self.tokens = tokens
        self.entry = nn.Conv1d(features + tokens.width, 2 * width, kernel_size=1)
        self.entry_norm = ChannelNorm(2 * width)
        self.layers = nn.ModuleList(MaskedHighwayConv(width) for _ in range(depth))
        self.drop = nn.Dropout(output_dropout)
        self.out = nn.Linear(width, vocab_size)

    def forward(self, feats: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:  # (B, L, F), (B, L)
        dense, ids = self.tokens(feats, prev)
        entry = project(self.entry.weight[:, :, 0], self.entry.bias, dense, ids)  # (B, L, 2W)
        a, b = self.entry_norm.norm(entry).chunk(2, dim=-1)  # channel-last throughout
        h = torch.tanh(a) * torch.sigmoid(b)  # (B, L, W)
        for layer in self.layers:
            h = layer(h)
        return self.out(self.drop(h))  # (B, L, V)


class LSTMHead(nn.Module):
    """An LSTM over [deconv features_t ; one-hot x_{t-1}], then Linear to V (Fig 2b)."""

    def __init__(
        self,
        features: int,
        tokens: TokenInput,
        cell: str,
        hidden: int,
        vocab_size: int,
        output_dropout: float = 0.0,
    ):
        super().__init__()
        self.tokens = tokens
        self.rnn = make_lstm(cell, features + tokens.width, hidden, vocab_size)
        self.drop = nn.Dropout(output_dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, feats: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:  # (B, L, F), (B, L)
        h, _ = self.rnn(*self.tokens(feats, prev))  # (B, L, H)
        return self.out(self.drop(h))  # (B, L, V)

    def step(self, feats: torch.Tensor, prev: torch.Tensor, state=None):
        """One step for generation: feats (B, F), prev ids (B,) -> logits (B, V), new state."""
        h, state = self.rnn(*self.tokens(feats.unsqueeze(1), prev.unsqueeze(1)), state)
        return self.out(h[:, 0]), state


HEADS = ("lstm", "bytenet")  # the hybrid's autoregressive heads, by name


def make_head(name: str, config: TrainConfig, features: int, vocab_size: int) -> nn.Module:
    """The hybrid's autoregressive head named `name`: features (B, L, F) and the previous
    tokens (B, L) -> logits (B, L, V)."""
    tokens = TokenInput(vocab_size, config.embed, config.embed_dropout)
    drop = config.output_dropout
    if name == "lstm":
        return LSTMHead(features, tokens, config.lstm_cell, config.hidden, vocab_size, drop)
    if name == "bytenet":
        return ByteNetHead(features, tokens, config.bytenet_width, config.depth, vocab_size, drop)
    raise ValueError(f"head={name!r} is not allowed: expected one of {', '.join(HEADS)}")

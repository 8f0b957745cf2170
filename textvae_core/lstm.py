"""The LSTMs of the models: torch's fused kernel, or the paper's LayerNorm LSTM.

Both take their input in two parts: dense features (B, T, F) or None, and token ids
(B, T) that stand for one-hot characters. The LSTM is the paper's: its input is the
concatenation [features ; one_hot(ids)]. The fused `nn.LSTM` takes that concatenation
whole; the LayerNorm LSTM never builds it: a one-hot vector times a weight matrix is a
row of that matrix, so its input projection is a matmul on the features plus a gather.

The LayerNorm cell's recurrence runs in `_LayerNormLSTMFunction`, a hand-written
forward and backward over all time steps: per step only h @ W_hh, one LayerNorm over
the 4H pre-activations and the gate arithmetic run; no autograd graph is built per step,
and the weight gradients are one matmul over all steps at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-5


def project(weight: torch.Tensor, bias: torch.Tensor | None, dense: torch.Tensor | None,
            ids: torch.Tensor | None) -> torch.Tensor:
    """[dense ; one_hot(ids)] @ weight.T + bias, with the one-hot part as a row gather.

    weight (O, F + V): its first F columns act on `dense` (B, T, F), the last V on ids.
    """
    n_dense = 0 if dense is None else dense.shape[-1]
    out = None if dense is None else F.linear(dense, weight[:, :n_dense])
    if ids is not None:
        rows = F.embedding(ids, weight[:, n_dense:].t())  # (B, T, O)
        out = rows if out is None else out + rows
    return out if bias is None else out + bias


class _LayerNormLSTMFunction(torch.autograd.Function):
    """h_t, c_t of the LayerNorm LSTM for all t, given the input projections gx (B, T, 4H).

    Per step: a = gx_t + h W_hh^T; (i, f, g, o) = LayerNorm(a) * gamma + beta;
    c = sig(f) c + sig(i) tanh(g); h = sig(o) tanh(c). Gate order as torch's LSTM.
    """

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, gamma, beta):
        B, T, H4 = gx.shape
        H = H4 // 4
        hs = gx.new_empty(B, T + 1, H)  # h_{-1} .. h_{T-1}
        cs = gx.new_empty(B, T + 1, H)
        acts = gx.new_empty(B, T, H4)  # sig(i), sig(f), tanh(g), sig(o)
        normed = gx.new_empty(B, T, H4)  # the LayerNorm's (a - mean) * rstd
        rstds = gx.new_empty(B, T, 1)
        hs[:, 0], cs[:, 0] = h0, c0
        w_t = w_hh.t()
        for t in range(T):
            a = torch.addmm(gx[:, t], hs[:, t], w_t)
            var, mean = torch.var_mean(a, dim=-1, keepdim=True, correction=0)
            rstd = torch.rsqrt(var + LN_EPS)
            n = (a - mean) * rstd
            z = torch.addcmul(beta, n, gamma)
            act = acts[:, t]
            torch.sigmoid(z, out=act)
            torch.tanh(z[:, 2 * H:3 * H], out=act[:, 2 * H:3 * H])
            i, f, g, o = act.chunk(4, dim=-1)
            c = torch.addcmul(f * cs[:, t], i, g)
            cs[:, t + 1] = c
            torch.mul(o, torch.tanh(c), out=hs[:, t + 1])
            normed[:, t], rstds[:, t] = n, rstd
        ctx.save_for_backward(hs, cs, acts, normed, rstds, w_hh, gamma)
        return hs[:, 1:], cs[:, -1]

    @staticmethod
    def backward(ctx, d_out, d_c_last):
        hs, cs, acts, normed, rstds, w_hh, gamma = ctx.saved_tensors
        B, T, H4 = acts.shape
        H = H4 // 4
        d_a = acts.new_empty(B, T, H4)  # dL/d(pre-LayerNorm a), all steps
        d_z = acts.new_empty(B, T, H4)  # dL/d(post-LayerNorm z), for gamma and beta
        dh = torch.zeros_like(hs[:, 0])
        dc = torch.zeros_like(cs[:, 0]) if d_c_last is None else d_c_last.clone()
        d_out = torch.zeros_like(hs[:, 1:]) if d_out is None else d_out
        for t in reversed(range(T)):
            i, f, g, o = acts[:, t].chunk(4, dim=-1)
            dh = dh + d_out[:, t]
            tc = torch.tanh(cs[:, t + 1])
            dc = torch.addcmul(dc, dh * o, 1 - tc * tc)
            dz = d_z[:, t]
            torch.mul(dc * g, i * (1 - i), out=dz[:, :H])
            torch.mul(dc * cs[:, t], f * (1 - f), out=dz[:, H:2 * H])
            torch.mul(dc * i, 1 - g * g, out=dz[:, 2 * H:3 * H])
            torch.mul(dh * tc, o * (1 - o), out=dz[:, 3 * H:])
            dn = dz * gamma
            n = normed[:, t]
            da = rstds[:, t] * (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True))
            d_a[:, t] = da
            dh = da @ w_hh
            dc = dc * f
        d_flat = d_a.reshape(B * T, H4)
        d_w_hh = d_flat.t() @ hs[:, :-1].reshape(B * T, H)
        d_gamma = (d_z * normed).sum((0, 1))
        d_beta = d_z.sum((0, 1))
        return d_a, dh, dc, d_w_hh, d_gamma, d_beta


class LayerNormLSTM(nn.Module):
    """LSTM with one LayerNorm over the 4H pre-activation, as in the paper's code.

    Parameters as a plain cell would hold them: w_ih (4H, F + V) with a bias, w_hh (4H, H),
    the LayerNorm's weight and bias (4H). The input projection for all steps is one matmul
    and one gather; the recurrence runs in `_LayerNormLSTMFunction`.
    """

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w_ih = nn.Linear(input_size, 4 * hidden)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.norm = nn.LayerNorm(4 * hidden, eps=LN_EPS)

    def forward(self, dense: torch.Tensor | None, ids: torch.Tensor | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Outputs (B, T, H) and the final state ((1, B, H), (1, B, H)), as nn.LSTM's."""
        gx = project(self.w_ih.weight, self.w_ih.bias, dense, ids)  # (B, T, 4H)
        dtype = self.w_hh.weight.dtype  # under autocast gx is bf16: the recurrence stays float32
        gx = gx.to(dtype)
        B = gx.shape[0]
        if state is None:
            h0 = c0 = gx.new_zeros(B, self.hidden)
        else:
            h0, c0 = state[0][0].to(dtype), state[1][0].to(dtype)
        with torch.autocast(gx.device.type, enabled=False):
            h, c = _LayerNormLSTMFunction.apply(gx, h0, c0, self.w_hh.weight, self.norm.weight, self.norm.bias)
        return h, (h[:, -1].unsqueeze(0), c.unsqueeze(0))


class FusedLSTM(nn.LSTM):
    """torch's fused LSTM (cuDNN on GPU) behind the same (dense, ids) interface: the fused
    kernel takes its input whole, so the one-hot part is built and concatenated."""

    def __init__(self, input_size: int, hidden: int, vocab_size: int):
        super().__init__(input_size, hidden, batch_first=True)
        self.vocab_size = vocab_size

    def forward(self, dense: torch.Tensor | None, ids: torch.Tensor | None = None, state=None):
        parts = [] if dense is None else [dense]
        if ids is not None:
            dtype = self.weight_ih_l0.dtype if dense is None else dense.dtype
            parts.append(F.one_hot(ids, self.vocab_size).to(dtype))
        return super().forward(torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0], state)


def make_lstm(cell: str, input_size: int, hidden: int, vocab_size: int) -> nn.Module:
    """An LSTM over [dense ; one_hot(ids)], input_size = dense width + vocab_size."""
    if cell == "fused":
        return FusedLSTM(input_size, hidden, vocab_size)
    if cell == "layernorm":
        return LayerNormLSTM(input_size, hidden)
    raise ValueError(f"lstm_cell={cell!r} is not allowed: expected fused or layernorm")

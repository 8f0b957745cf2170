"""The LSTMs of the models: torch's fused kernel, or the paper's LayerNorm LSTM.

Both take their input in two parts: dense features (B, T, F) or None, and token ids
(B, T) that stand for one-hot characters. The LSTM is the paper's: its input is the
concatenation [features ; one_hot(ids)]. The fused `nn.LSTM` takes that concatenation
whole. The LayerNorm LSTM computes its input projection for all steps before its loop:
on characters alone as a row gather (a one-hot vector times a weight matrix is a row of
it), on features and characters as one matmul (`onehot.project`).

The LayerNorm cell's recurrence is a hand-written forward and backward over all time
steps: per step only h @ W_hh, one LayerNorm over the 4H pre-activations and the gate
arithmetic run; no autograd graph is built per step, and the weight gradients are one
matmul over all steps at the end. On CPU the loop runs compiled (`lstm_ext.cpp`, built
once per machine, `_CompiledLayerNormLSTMFunction`); on CUDA, with VAESTUDY_LSTM_EXT=0 or
where no compiler is found, the same arithmetic runs as a Python loop of ATen calls
(`_LayerNormLSTMFunction`). Both take and give time-major tensors (T, B, .).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import lstm_ext
from .onehot import project

LN_EPS = 1e-5


class _LayerNormLSTMFunction(torch.autograd.Function):
    """h_t (T, B, H), c_{T-1} of the LayerNorm LSTM, given the input projections gx (T, B, 4H).

    Per step: a = gx_t + h W_hh^T; (i, f, g, o) = LayerNorm(a) * gamma + beta;
    c = sig(f) c + sig(i) tanh(g); h = sig(o) tanh(c). Gate order as torch's LSTM.

    Buffers are time-major (T, B, .), so each step reads and writes contiguous blocks in
    place. The backward computes every factor that does not depend on the incoming
    gradient for all steps at once, so its loop is ~8 ops per step: one matmul, one
    LayerNorm backward and the products of the carried dh and dc with those factors.
    """

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, gamma, beta):
        T, B, H4 = gx.shape
        H = H4 // 4
        pre = gx.new_empty(T, B, H4)  # a, before the LayerNorm
        acts = gx.new_empty(T, B, H4)  # sig(i), sig(f), tanh(g), sig(o)
        hs = gx.new_empty(T + 1, B, H)  # h_{-1} .. h_{T-1}
        cs = gx.new_empty(T + 1, B, H)
        tanh_c = gx.new_empty(T, B, H)
        hs[0], cs[0] = h0, c0
        means, rstds = [], []
        w_t = w_hh.t()
        for t in range(T):
            torch.addmm(gx[t], hs[t], w_t, out=pre[t])
            z, mean, rstd = torch.native_layer_norm(pre[t], (H4,), gamma, beta, LN_EPS)
            act = acts[t]
            torch.sigmoid(z, out=act)
            torch.tanh(z[:, 2 * H : 3 * H], out=act[:, 2 * H : 3 * H])
            torch.mul(act[:, H : 2 * H], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(act[:, :H], act[:, 2 * H : 3 * H])
            torch.tanh(cs[t + 1], out=tanh_c[t])
            torch.mul(act[:, 3 * H :], tanh_c[t], out=hs[t + 1])
            means.append(mean)
            rstds.append(rstd)
        ctx.save_for_backward(
            pre, acts, hs, cs, tanh_c, torch.stack(means), torch.stack(rstds), w_hh, gamma, beta
        )
        return hs[1:], cs[T]

    @staticmethod
    def backward(ctx, d_out, d_c_last):
        pre, acts, hs, cs, tanh_c, means, rstds, w_hh, gamma, beta = ctx.saved_tensors
        T, B, H4 = acts.shape
        H = H4 // 4
        i, f, g, o = acts.chunk(4, dim=-1)  # (T, B, H) each
        # Factors of dL/d(pre-activation z) that do not depend on the carried gradients:
        # dz_i = dc * g i(1-i), dz_f = dc * c_prev f(1-f), dz_g = dc * i (1-g^2),
        # dz_o = dh * tanh(c) o(1-o).
        by_dc = torch.stack(
            [g * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g * g)], dim=2
        )  # (T, B, 3, H)
        by_dh = tanh_c * o * (1 - o)
        dc_from_dh = o * (1 - tanh_c * tanh_c)  # dc += dh * o (1 - tanh(c)^2)
        d_z = acts.new_empty(T, B, H4)
        d_a = acts.new_empty(T, B, H4)
        dh = hs.new_zeros(B, H)
        dc = hs.new_zeros(B, H) if d_c_last is None else d_c_last.clone()
        mask = [True, False, False]
        for t in reversed(range(T)):
            if d_out is not None:
                dh.add_(d_out[t])
            dc.addcmul_(dh, dc_from_dh[t])
            dz = d_z[t]
            torch.mul(by_dc[t], dc.unsqueeze(1), out=dz[:, : 3 * H].view(B, 3, H))
            torch.mul(dh, by_dh[t], out=dz[:, 3 * H :])
            da = torch.ops.aten.native_layer_norm_backward(
                dz, pre[t], (H4,), means[t], rstds[t], gamma, beta, mask
            )[0]
            d_a[t] = da
            torch.mm(da, w_hh, out=dh)
            dc.mul_(f[t])
        d_w_hh = d_a.reshape(T * B, H4).t() @ hs[:-1].reshape(T * B, H)
        normed = (pre - means) * rstds
        d_gamma = (d_z * normed).sum((0, 1))
        d_beta = d_z.sum((0, 1))
        return d_a, dh, dc, d_w_hh, d_gamma, d_beta


class _CompiledLayerNormLSTMFunction(torch.autograd.Function):
    """The same recurrence as `_LayerNormLSTMFunction`, each direction one call into the
    compiled extension (CPU, float32 and float64)."""

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, gamma, beta):
        hs, cs, xhat, acts, tanh_c, rstd = lstm_ext.ops().forward(
            gx, h0, c0, w_hh, gamma, beta, LN_EPS
        )
        ctx.save_for_backward(xhat, acts, hs, cs, tanh_c, rstd, w_hh, gamma)
        return hs[1:], cs[-1]

    @staticmethod
    def backward(ctx, d_out, d_c_last):
        return lstm_ext.ops().backward(d_out, d_c_last, *ctx.saved_tensors)


def layernorm_lstm(gx, h0, c0, w_hh, gamma, beta):
    """The LayerNorm recurrence over time-major gx (T, B, 4H): the compiled loop on CPU
    where it is built, else the Python loop. Returns h (T, B, H) and the last c (B, H)."""
    fn = _CompiledLayerNormLSTMFunction if lstm_ext.runs_on(gx) else _LayerNormLSTMFunction
    return fn.apply(gx, h0, c0, w_hh, gamma, beta)


class LayerNormLSTM(nn.Module):
    """LSTM with one LayerNorm over the 4H pre-activation, as in the paper's code.

    Parameters as a plain cell would hold them: w_ih (4H, F + V) with a bias, w_hh (4H, H),
    the LayerNorm's weight and bias (4H). The input projection for all steps is one matmul
    (or a gather), made time-major for the recurrence (`layernorm_lstm`).
    """

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w_ih = nn.Linear(input_size, 4 * hidden)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.norm = nn.LayerNorm(4 * hidden, eps=LN_EPS)

    def forward(
        self,
        dense: torch.Tensor | None,
        ids: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """Outputs (B, T, H) and the final state ((1, B, H), (1, B, H)), as nn.LSTM's."""
        dense_t = None if dense is None else dense.transpose(0, 1)
        ids_t = None if ids is None else ids.t()
        gx = project(self.w_ih.weight, self.w_ih.bias, dense_t, ids_t)  # (T, B, 4H)
        dtype = self.w_hh.weight.dtype  # under autocast gx is bf16: the recurrence stays float32
        gx = gx.to(dtype)
        B = gx.shape[1]
        if state is None:
            h0 = c0 = gx.new_zeros(B, self.hidden)
        else:
            h0, c0 = state[0][0].to(dtype), state[1][0].to(dtype)
        with torch.autocast(gx.device.type, enabled=False):
            h, c = layernorm_lstm(gx, h0, c0, self.w_hh.weight, self.norm.weight, self.norm.bias)
        return h.transpose(0, 1), (h[-1].unsqueeze(0), c.unsqueeze(0))


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

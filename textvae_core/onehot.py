"""Layers on one-hot characters, computed as row gathers where that is faster.

A one-hot vector times a weight matrix is a row of that matrix, so these give the dense
one-hot products of the paper's models without their FLOPs: `project` for a linear map of
[dense features ; one_hot(ids)] (a gather on characters alone; with features, one matmul),
`onehot_conv` for a Conv1d on one_hot(ids). Tests check outputs and gradients against the
dense computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def project(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dense: torch.Tensor | None,
    ids: torch.Tensor | None,
) -> torch.Tensor:
    """[dense ; one_hot(ids)] @ weight.T + bias.

    weight (O, F + V): its first F columns act on `dense` (B, T, F), the last V on ids.
    With ids alone the product is a row gather. With dense features too, the one-hot columns
    join the features in one matmul with the bias folded in: at the hybrid's sizes (F=128,
    V=51, O=1024) that took 21 ms forward and backward against 26 ms for a matmul, a gather
    and two adds (`vaestudy bench throughput` measures the models that use it).
    """
    if dense is None:
        rows = F.embedding(ids, weight.t())  # (B, T, O)
        return rows if bias is None else rows + bias
    if ids is None:
        return F.linear(dense, weight[:, : dense.shape[-1]], bias)
    if torch.is_autocast_enabled(dense.device.type):
        return F.linear(_with_one_hot(dense, ids, weight.shape[1]), weight, bias)
    return _FeaturesAndOneHotLinear.apply(dense, ids, weight, bias)


def _with_one_hot(dense: torch.Tensor, ids: torch.Tensor, width: int) -> torch.Tensor:
    """[dense ; one_hot(ids)], `width` columns in all."""
    return torch.cat([dense, F.one_hot(ids, width - dense.shape[-1]).to(dense.dtype)], dim=-1)


class _FeaturesAndOneHotLinear(torch.autograd.Function):
    """F.linear on [dense ; one_hot(ids)], whose backward computes the input's gradient for
    the dense columns only (autograd's would also multiply by the one-hot columns' weights, a
    gradient nobody reads: ~30% of that product at the hybrid's sizes)."""

    @staticmethod
    def forward(ctx, dense, ids, weight, bias):
        both = _with_one_hot(dense, ids, weight.shape[1])
        ctx.save_for_backward(both, weight)
        ctx.n_dense = dense.shape[-1]
        return F.linear(both, weight, bias)

    @staticmethod
    def backward(ctx, d_out):
        both, weight = ctx.saved_tensors
        d_flat = d_out.reshape(-1, d_out.shape[-1])
        d_dense = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_dense = (d_flat @ weight[:, : ctx.n_dense]).view(*d_out.shape[:-1], ctx.n_dense)
        if ctx.needs_input_grad[2]:
            d_weight = d_flat.t() @ both.reshape(-1, both.shape[-1])
        if ctx.needs_input_grad[3]:  # False without a bias
            d_bias = d_flat.sum(0)
        return d_dense, None, d_weight, d_bias


def onehot_conv(conv: nn.Conv1d, ids: torch.Tensor) -> torch.Tensor:
    """conv(one_hot(ids).transpose(1, 2)) for a Conv1d(V, C, k, stride, padding) on ids (B, L),
    as k row gathers: tap j of output t reads weight[:, ids[t * stride + j - padding], j].
    Zero padding reads an all-zero row. Returns (B, C, L_out)."""
    (pad,), (stride,), k = conv.padding, conv.stride, conv.kernel_size[0]
    C, V = conv.weight.shape[:2]
    table = F.pad(conv.weight.permute(2, 1, 0), (0, 0, 0, 1))  # (k, V + 1, C); row V is zero
    ids = F.pad(ids, (pad, pad), value=V)
    n_out = (ids.shape[1] - k) // stride + 1
    taps = torch.stack(
        [ids[:, j : j + stride * (n_out - 1) + 1 : stride] + j * (V + 1) for j in range(k)], -1
    )
    out = F.embedding(taps, table.reshape(k * (V + 1), C)).sum(2)  # (B, L_out, C)
    return (out if conv.bias is None else out + conv.bias).transpose(1, 2)

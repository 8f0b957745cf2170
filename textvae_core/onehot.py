"""Layers on one-hot characters, computed as row gathers.

A one-hot vector times a weight matrix is a row of that matrix, so these give the dense
one-hot products of the paper's models without their FLOPs: `project` for a linear map of
[dense features ; one_hot(ids)], `onehot_conv` for a Conv1d on one_hot(ids). Tests check
outputs and gradients against the dense computation.
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
    """[dense ; one_hot(ids)] @ weight.T + bias, with the one-hot part as a row gather.

    weight (O, F + V): its first F columns act on `dense` (B, T, F), the last V on ids.
    """
    n_dense = 0 if dense is None else dense.shape[-1]
    out = None if dense is None else F.linear(dense, weight[:, :n_dense])
    if ids is not None:
        rows = F.embedding(ids, weight[:, n_dense:].t())  # (B, T, O)
        out = rows if out is None else out + rows
    return out if bias is None else out + bias


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

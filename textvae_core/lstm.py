"""The LSTMs of the models: torch's fused kernel, or the paper's LayerNorm LSTM."""

from __future__ import annotations

import torch
from torch import nn


class LayerNormLSTM(nn.Module):
    """LSTM with one LayerNorm over the 4H pre-activation, as in the paper's code.

    The input projection for all steps is one matmul; only h @ W_hh runs per step. It is
    slower than the fused kernel on CPU and GPU, so it is an option, not the default.
    """

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w_ih = nn.Linear(input_size, 4 * hidden)
        self.w_hh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.norm = nn.LayerNorm(4 * hidden)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, _ = x.shape
        if state is None:
            h = x.new_zeros(B, self.hidden)
            c = x.new_zeros(B, self.hidden)
        else:
            h, c = state[0][0], state[1][0]
        gates_x = self.w_ih(x)  # (B, T, 4H)
        outputs = []
        for t in range(T):
            i, f, g, o = self.norm(gates_x[:, t] + self.w_hh(h)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h.unsqueeze(0), c.unsqueeze(0))  # (B, T, H)


def make_lstm(cell: str, input_size: int, hidden: int) -> nn.Module:
    if cell == "fused":
        return nn.LSTM(input_size, hidden, batch_first=True)
    if cell == "layernorm":
        return LayerNormLSTM(input_size, hidden)
    raise ValueError(f"lstm_cell={cell!r} is not allowed: expected fused or layernorm")

"""Training throughput of the models, measured side by side, with achieved FLOP rates.

FLOPs are counted analytically (a multiply-add is 2 FLOPs, a training step ~3x the
forward pass) over the layers that do matrix work: convolutions, deconvolutions, linear
layers and LSTM gates. Two counts: model FLOPs count one-hot inputs as dense products, as
the paper's models are defined and as MFU counts them; executed FLOPs leave out the
products our layers compute as row gathers (the conv encoder's first layer and the LayerNorm
cell's input projection on characters alone; the fused nn.LSTM runs them dense, and so does
any projection of features and characters together, `onehot.project`).
Achieved GFLOP/s are model FLOPs per second.
"""

from __future__ import annotations

import statistics
import time

import torch

from . import lstm_ext
from .config import TrainConfig, make_config
from .data import Corpus, load_corpus
from .blocks import padded_length
from .train import Trainer


def forward_flops_per_fragment(cfg: TrainConfig, vocab_size: int, executed: bool = False) -> float:
    """Forward-pass FLOPs for one fragment of cfg.length characters: model FLOPs, or with
    `executed` those that run (one-hot products done as gathers left out)."""
    L, V, Z, H = cfg.length, vocab_size, cfg.latent, cfg.hidden
    # the fused nn.LSTM multiplies one-hots; the LayerNorm cell gathers them when they are its
    # whole input
    gathers = executed and cfg.lstm_cell == "layernorm"
    lstm_step = lambda dense, onehot: (  # noqa: E731
        2 * (dense + (0 if gathers and not dense else onehot) + H) * 4 * H
    )
    if cfg.model == "lstm":
        return 2 * L * lstm_step(0, V) + 2 * H * 2 * Z + 2 * Z * 2 * H + 2 * L * H * V
    n = len(cfg.conv_channels)
    lp = padded_length(L, n)
    flops, c_in, length = 0.0, V, lp
    for i, c_out in enumerate(
        cfg.conv_channels
    ):  # encoder convs, k=3, stride 2 (the first on one-hots)
        length //= 2
        flops += 0 if executed and i == 0 else 2 * length * c_out * c_in * 3
        c_in = c_out
    flops += 2 * length * c_in * 2 * Z  # to (mu, logvar)
    flops += 2 * Z * length * c_in  # z -> first deconv input
    widths = list(reversed(cfg.conv_channels)) + [cfg.deconv_out]
    for a, b in zip(widths[:-1], widths[1:]):  # deconvs, k=3, stride 2
        flops += 2 * length * a * b * 3
        length *= 2
    F_ = cfg.deconv_out
    if cfg.model == "conv":
        return flops + 2 * L * F_ * V
    flops += 2 * L * F_ * V  # auxiliary head
    if cfg.model == "hybrid-lstm":
        return flops + L * lstm_step(F_, V) + 2 * L * H * V
    W = cfg.bytenet_width
    return flops + 2 * L * (F_ + V) * 2 * W + cfg.depth * 2 * L * W * 2 * W * 2 + 2 * L * W * V


def matmul_gflops(
    threads: int, sizes: tuple[int, ...] = (512, 1024, 2048), seconds: float = 0.5
) -> float:
    """The machine's float32 matrix-multiply rate at this thread count: the best of a few
    square sizes, so the reference is what the BLAS can actually reach here."""
    torch.set_num_threads(threads)
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            n += 1
        best = max(best, 2 * size**3 * n / (time.perf_counter() - start) / 1e9)
    return best


LSTM_MODELS = ("hybrid-lstm", "lstm")


def _spread(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def measure_throughput(
    models: tuple[str, ...] = ("hybrid-lstm", "hybrid-bytenet", "lstm"),
    threads: int = 1,
    seconds: float = 6.0,
    rounds: int = 3,
    length: int = 52,
    batch_size: int = 64,
    corpus: Corpus | None = None,
    overrides: dict | None = None,
    layernorm: bool = True,
) -> dict:
    """Training chars/s per model at the released PTB sizes (or those `overrides` set),
    interleaved over `rounds` so every model sees the same machine conditions; the median
    round is reported, with the spread over rounds.

    The models with an LSTM run with the fused cell, and (`layernorm`) also as
    "<model>+layernorm" with the paper's LayerNorm cell, whose chars/s ratio to the
    fused cell is taken round by round (each round's ratio from rates measured seconds
    apart) and reported as the median ratio and its range.
    """
    torch.set_num_threads(threads)
    corpus = corpus or load_corpus("synthetic")
    variants = {m: {} for m in models}
    if layernorm:
        variants.update(
            {
                f"{m}+layernorm": {"model": m, "lstm_cell": "layernorm"}
                for m in models
                if m in LSTM_MODELS
            }
        )
    trainers = {}
    for name, extra in variants.items():
        cfg = make_config(
            extra.get("model", name),
            "ptb",
            {
                "length": length,
                "batch_size": batch_size,
                "threads": threads,
                "corpus": corpus.name,
                "lstm_cell": "fused",
                **(overrides or {}),
                **{k: v for k, v in extra.items() if k != "model"},
            },
        )
        trainers[name] = Trainer(cfg, corpus)
        for _ in range(3):  # warm-up: allocator, kernels, Adam state
            trainers[name].train_step()
    rates: dict[str, list[float]] = {m: [] for m in trainers}
    matmul = []
    for _ in range(rounds):
        # the reference is timed no longer than a model each round (0.5 s a size at most)
        matmul.append(matmul_gflops(threads, seconds=min(0.5, seconds / rounds / 3)))
        for m, tr in trainers.items():
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                tr.train_step()
                steps += 1
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
            rates[m].append(steps * batch_size * length / (time.perf_counter() - start))
    mm = statistics.median(matmul)
    sizes = next(iter(trainers.values())).config
    result = {
        "threads": threads,
        "length": length,
        "batch_size": batch_size,
        "rounds": rounds,
        "sizes": {
            "hidden": sizes.hidden,
            "latent": sizes.latent,
            "conv_channels": list(sizes.conv_channels),
            "bytenet_width": sizes.bytenet_width,
        },
        "device": str(next(iter(trainers.values())).device),
        "layernorm_cell": lstm_ext.status() if layernorm else None,
        "matmul_gflops": mm,
        "matmul_gflops_spread": [min(matmul), max(matmul)],
        "flop_counting": "achieved_gflops: model FLOPs (one-hot inputs counted as dense products, "
        "as MFU counts them) per second; executed_gflops: the FLOPs that run (one-hot products "
        "done as row gathers left out)",
        "models": {},
    }
    for m, tr in trainers.items():
        cps = statistics.median(rates[m])
        fwd = forward_flops_per_fragment(tr.config, corpus.vocab.size)
        run = forward_flops_per_fragment(tr.config, corpus.vocab.size, executed=True)
        gflops = 3 * fwd / length * cps / 1e9
        entry = {
            "model": tr.config.model,
            "lstm_cell": tr.config.lstm_cell,
            "chars_per_s": cps,
            "train_gflop_per_fragment": 3 * fwd / 1e9,
            "executed_gflop_per_fragment": 3 * run / 1e9,
            "achieved_gflops": gflops,
            "executed_gflops": 3 * run / length * cps / 1e9,
            "fraction_of_matmul": gflops / mm,
            "fraction_of_matmul_spread": _spread(
                [3 * fwd / length * r / 1e9 / g for r, g in zip(rates[m], matmul)]
            ),
            "rounds_chars_per_s": rates[m],
        }
        if m.endswith("+layernorm"):
            per_round = [a / b for a, b in zip(rates[m], rates[tr.config.model])]
            entry["ratio_to_fused"] = statistics.median(per_round)
            entry["ratio_to_fused_spread"] = _spread(per_round)
            entry["rounds_ratio_to_fused"] = per_round
        result["models"][m] = entry
    if "hybrid-lstm" in rates and "lstm" in rates:
        result["ratio_hybrid_lstm_over_lstm"] = (
            result["models"]["hybrid-lstm"]["chars_per_s"] / result["models"]["lstm"]["chars_per_s"]
        )
        flop = {
            m: forward_flops_per_fragment(trainers[m].config, corpus.vocab.size)
            for m in ("lstm", "hybrid-lstm")
        }
        result["flop_ratio_lstm_over_hybrid_lstm"] = flop["lstm"] / flop["hybrid-lstm"]
    return result

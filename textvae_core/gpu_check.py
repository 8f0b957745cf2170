"""`make gpu-check`: what the models do on a CUDA GPU, in one short run (at most ~5 minutes).

Needs only Python with torch, numpy and pyarrow, and this repository: no virtualenv, no Ray,
MLflow or Optuna, no network and no ../shared (it trains on the built-in synthetic corpus).
On a machine without CUDA it says so in one line and exits 0.

    python -m textvae_core.gpu_check [--out gpu-check.json]
    python -m textvae_core.gpu_check --cpu --tiny   # the same code paths on CPU, tiny sizes (tests)

It measures, at the paper's PTB sizes (batch 64, L=52) with bf16 autocast:
1. training chars/s of hybrid-lstm, hybrid-bytenet and lstm, fused and LayerNorm cells
   side by side (`bench.measure_throughput`), and the hybrid/lstm ratio (the paper: ~2x);
2. a 2000-step `fit` of hybrid-lstm and of lstm (the paper preset's LayerNorm cell): wall
   time, chars/s, peak GPU memory;
3. four small trials in one process sharing the GPU, each stepping in its own thread, the
   way fractional GPUs share one under Ray: aggregate and per-trial chars/s, memory per trial.
Everything printed is also written to one JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import torch

from .measures import key


def _memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _utilisation(device: torch.device) -> float | None:
    """GPU utilisation in percent where torch can read it (needs pynvml), else None."""
    if device.type != "cuda":
        return None
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - no NVML here: leave it out
        return None


def throughput(device: str, tiny: bool, seconds: float) -> dict:
    from .bench import measure_throughput
    from .data import load_corpus

    overrides = {"device": device}
    if tiny:
        overrides.update(
            hidden=32, latent=8, conv_channels=(16, 32), deconv_out=32, bytenet_width=32, depth=2
        )
    return measure_throughput(
        threads=1 if device == "cpu" else 2,
        seconds=seconds,
        rounds=3,
        length=52,
        batch_size=64,
        corpus=load_corpus("synthetic"),
        overrides=overrides,
    )


def short_fits(device: str, tiny: bool, steps: int) -> dict:
    from .config import make_config
    from .data import load_corpus
    from .train import Trainer

    corpus, out = load_corpus("synthetic"), {}
    dev = torch.device(device)
    for model in ("hybrid-lstm", "lstm"):
        cfg = make_config(
            model,
            "tiny" if tiny else "ptb",
            {
                "corpus": "synthetic",
                "steps": steps,
                "eval_every": steps,
                "iw_samples": 0,
                "lstm_cell": "layernorm",
                "device": device,
                "batch_size": 64,
                "length": 52,
                "threads": 1 if device == "cpu" else 2,
            },
        )
        _reset_memory(dev)
        trainer = Trainer(cfg, corpus)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_s = time.perf_counter() - start
        final = trainer.report(final=True).metrics
        out[model] = {
            "steps": steps,
            "train_s": train_s,
            "chars_per_s": steps * 64 * 52 / train_s,
            "valid_total_bpc": final[key("valid", "total_bpc")],
            "valid_kl_bpc": final[key("valid", "kl_bpc")],
            "peak_memory_mib": _memory_mib(dev),
            "utilisation_pct": _utilisation(dev),
        }
    out["ratio_hybrid_lstm_over_lstm"] = (
        out["hybrid-lstm"]["chars_per_s"] / out["lstm"]["chars_per_s"]
    )
    return out


def shared_trials(device: str, tiny: bool, steps: int, n: int = 4) -> dict:
    """n small trials in one process, each in its own thread on the same GPU."""
    from .config import make_config
    from .data import load_corpus
    from .train import Trainer

    corpus, dev = load_corpus("synthetic"), torch.device(device)
    sizes = {} if not tiny else {"hidden": 32, "latent": 8}
    trainers = [
        Trainer(
            make_config(
                "hybrid-lstm",
                "ptb",
                {
                    "corpus": "synthetic",
                    "device": device,
                    "seed": i,
                    "batch_size": 32,
                    "length": 52,
                    "hidden": 256,
                    "latent": 32,
                    **sizes,
                },
            ),
            corpus,
        )
        for i in range(n)
    ]
    for tr in trainers:
        tr.train_step()  # warm-up
    _reset_memory(dev)
    walls = [0.0] * n

    def work(i: int) -> None:
        stream = torch.cuda.Stream(dev) if dev.type == "cuda" else None
        start = time.perf_counter()
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(steps):
                trainers[i].train_step()
        if stream is not None:
            stream.synchronize()
        walls[i] = time.perf_counter() - start

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    util = None
    while any(t.is_alive() for t in threads):
        util = _utilisation(dev) if util is None else max(util, _utilisation(dev) or 0.0)
        time.sleep(0.2)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    chars = steps * 32 * 52
    peak = _memory_mib(dev)
    return {
        "trials": n,
        "steps_each": steps,
        "wall_s": wall,
        "aggregate_chars_per_s": n * chars / wall,
        "per_trial_chars_per_s": [chars / w for w in walls],
        "peak_memory_mib_all": peak,
        "memory_mib_per_trial": None if peak is None else peak / n,
        "max_utilisation_pct": util,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu-check.json", help="JSON file for the measurements")
    parser.add_argument(
        "--cpu", action="store_true", help="run the same code paths on CPU (for tests)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and few steps (for tests)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}); nothing to measure")
        return 0
    device = "cpu" if args.cpu else "cuda"
    started = time.perf_counter()
    result = {
        "torch": torch.__version__,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }
    result["throughput"] = throughput(device, args.tiny, seconds=0.6 if args.tiny else 9.0)
    for name, m in result["throughput"]["models"].items():
        extra = f", {m['ratio_to_fused']:.2f}x fused" if "ratio_to_fused" in m else ""
        print(f"throughput {name}: {m['chars_per_s']:.0f} chars/s{extra}")
    print(f"hybrid-lstm / lstm (fused): {result['throughput']['ratio_hybrid_lstm_over_lstm']:.2f}x")
    result["fit"] = short_fits(device, args.tiny, steps=20 if args.tiny else 2000)
    for model in ("hybrid-lstm", "lstm"):
        f = result["fit"][model]
        print(
            f"fit {model} (LayerNorm) {f['steps']} steps: {f['train_s']:.1f} s, "
            f"{f['chars_per_s']:.0f} chars/s, peak memory {f['peak_memory_mib']} MiB"
        )
    print(
        f"fit hybrid-lstm / lstm: {result['fit']['ratio_hybrid_lstm_over_lstm']:.2f}x "
        "(the paper: ~2x)"
    )
    result["shared"] = shared_trials(device, args.tiny, steps=5 if args.tiny else 300)
    s = result["shared"]
    print(
        f"{s['trials']} trials sharing one device: {s['aggregate_chars_per_s']:.0f} chars/s in "
        f"all, memory per trial {s['memory_mib_per_trial']} MiB, max utilisation "
        f"{s['max_utilisation_pct']}%"
    )
    result["wall_s"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"gpu-check: {result['wall_s']:.0f} s, measurements in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

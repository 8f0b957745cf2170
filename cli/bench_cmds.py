"""`vaestudy bench`: benchmarks that print ratios measured side by side in one run."""

from __future__ import annotations

import json

import click

from .study_cmds import echo_err


@click.group()
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run.

    \b
    Example:
      vaestudy bench throughput --threads 1
      vaestudy bench overhead --json
    """


@bench.command("throughput")
@click.option(
    "--threads", default=1, show_default=True, help="torch threads (same for every model)."
)
@click.option(
    "--seconds", default=10.0, show_default=True, help="Timed seconds per model, over all rounds."
)
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Interleaved rounds; medians and ranges are over them.",
)
@click.option(
    "--preset",
    type=click.Choice(["paper", "cpu"]),
    default="paper",
    show_default=True,
    help="Model sizes: the released ones (paper), or the cpu preset's (hidden 256, batch 32).",
)
@click.option("--length", default=52, show_default=True, help="Fragment length.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def bench_throughput(
    threads: int, seconds: float, rounds: int, preset: str, length: int, as_json: bool
) -> None:
    """Training chars/s of hybrid-lstm, hybrid-bytenet and lstm, each LSTM model with the
    fused and the LayerNorm cell, interleaved over rounds.

    \b
    Example:
      vaestudy bench throughput --threads 1 --rounds 5 --json
      vaestudy bench throughput --preset cpu --threads 2
    """
    from textvae_core.bench import measure_throughput

    from studies.presets import CPU, CPU_SIZES
    from studies.results.claims import speed_claim

    sizes = {}
    if preset == "cpu":
        sizes = {**CPU_SIZES, "batch_size": CPU["batch_size"]}
    r = measure_throughput(
        threads=threads,
        seconds=seconds,
        rounds=rounds,
        length=length,
        batch_size=sizes.pop("batch_size", 64),
        overrides=sizes,
    )
    r["preset"] = preset
    r["claim_speed"] = speed_claim(r["ratio_hybrid_lstm_over_lstm"])
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return
    cell = r["layernorm_cell"]
    click.echo(
        f"device {r['device']}, {threads} thread(s), {preset} sizes "
        f"(hidden {r['sizes']['hidden']}), "
        f"L={length}, batch {r['batch_size']}, {rounds} rounds; matmul {r['matmul_gflops']:.1f} "
        f"GFLOP/s [{r['matmul_gflops_spread'][0]:.1f}, {r['matmul_gflops_spread'][1]:.1f}]; "
        f"LayerNorm cell {'compiled' if cell['compiled'] else 'Python loop: ' + cell['why_not']}"
    )
    click.echo(
        f"{'model':24}{'chars/s':>10}{'GFLOP/s':>10}{'of matmul':>11}{'executed':>10}"
        f"{'vs fused [range]':>22}"
    )
    for m, v in r["models"].items():
        ratio = ""
        if "ratio_to_fused" in v:
            lo, hi = v["ratio_to_fused_spread"]
            ratio = f"{v['ratio_to_fused']:.2f}x [{lo:.2f}, {hi:.2f}]"
        click.echo(
            f"{m:24}{v['chars_per_s']:>10.0f}{v['achieved_gflops']:>10.1f}{v['fraction_of_matmul']:>10.0%}"
            f"{v['executed_gflops']:>10.1f}{ratio:>22}"
        )
    click.echo(
        "GFLOP/s count model FLOPs (one-hot inputs as dense products, as MFU does); "
        "executed: the FLOPs that run (one-hot products done as gathers left out)"
    )
    click.echo(
        f"hybrid-lstm / lstm chars/s: {r['ratio_hybrid_lstm_over_lstm']:.2f}x "
        f"(FLOP ratio lstm / hybrid-lstm {r['flop_ratio_lstm_over_hybrid_lstm']:.2f}x)"
    )
    click.echo(f"claim: {r['claim_speed']['text']}: {r['claim_speed']['verdict']}")


@bench.command("overhead")
@click.option(
    "--study", default="dropout", show_default=True, help="Its grid points are the trials."
)
@click.option(
    "--preset",
    default="smoke",
    show_default=True,
    help="Sizes and steps of the trials (smoke, cpu).",
)
@click.option(
    "--limit-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Train each trial this many steps instead of the preset's.",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Seeds per point.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Trials at once in both runs.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1, max=20),
    default=1,
    show_default=True,
    help="Bare and platform passes, this many pairs, alternating which runs first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def bench_overhead(
    study: str,
    preset: str,
    limit_steps: int | None,
    num_samples: int,
    concurrency: int,
    repeats: int,
    as_json: bool,
) -> None:
    """A study's trials through `vaestudy run` vs bare fit calls, side by side.

    \b
    Example:
      vaestudy bench overhead --json
      vaestudy bench overhead --preset cpu --limit-steps 500 --repeats 3
    """
    from studies.run.bench import PARTS, measure_overhead

    r = measure_overhead(
        study, preset, concurrency, limit_steps, num_samples, echo=echo_err, repeats=repeats
    )
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return
    steps = "/".join(map(str, r["steps"]))
    click.echo(f"{r['trials']} {preset} trials of {study} ({steps} steps), {concurrency} at a time")
    click.echo(f"bare fit calls   {r['bare_wall_s']:7.1f} s  (mean fit {r['mean_fit_s']:.1f} s)")
    click.echo(
        f"vaestudy run     {r['platform_wall_s']:7.1f} s  "
        f"(Ray started beforehand in {r['ray_start_s']:.1f} s)"
    )
    click.echo(
        f"ratio {r['ratio_platform_over_bare']:.3f}x: study set-up {r['setup_s']:.1f} s before "
        f"the first trial, {r['teardown_s']:.1f} s after the last; without them "
        f"{r['ratio_after_setup']:.3f}x; per trial {r['per_trial_overhead_s']:.2f} s of "
        "scheduling and result plumbing"
    )
    if repeats > 1:
        lo, hi = r["ratio_after_setup_spread"]
        slo, shi = r["setup_s_spread"]
        click.echo(
            f"over {repeats} pairs: ratio after set-up median {r['ratio_after_setup_median']:.3f}x "
            f"[{lo:.3f}, {hi:.3f}], set-up median {r['setup_s_median']:.1f} s [{slo:.1f}, "
            f"{shi:.1f}] (the lines above are the median pair's)"
        )
    phases = ", ".join(f"{k} {v:.2f}" for k, v in r["setup_split_s"].items())
    click.echo(f"set-up by phase (s): {phases}")
    split = ", ".join(f"{k} {r['split'][k]:.1%}" for k in PARTS if k in r["split"])
    click.echo(
        f"trial time: {split} (final IW bound and MI pool {r['final_eval_share']:.1%}); "
        "rest: start-up"
    )
    if r["eval_share_at_preset_steps"] is not None and r["steps"] != r["preset_steps"]:
        click.echo(
            f"eval share projected to the preset's {'/'.join(map(str, r['preset_steps']))} steps: "
            f"{r['eval_share_at_preset_steps']:.1%} of train + eval"
        )
